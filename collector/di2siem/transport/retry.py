"""The retry policy: which failures are worth another attempt, Retry-After, and exponential
backoff with full jitter that never waits past the run's time budget."""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from ..timeutil import parse_http_date_ms


class FatalError(Exception):
    """Not worth retrying (bad key, bad request, TLS failure); the message names the key."""


class RetryableError(Exception):
    """A transient failure: 429, 5xx, connection errors, timeouts, malformed answers."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GaveUpError(Exception):
    """Retries exhausted."""


class PastDeadline(GaveUpError):
    """Retries stopped because the next attempt would start past the policy's deadline;
    ``cause`` is the last attempt's error."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when_ms = parse_http_date_ms(value)
        if when_ms is None:
            return None
        seconds = when_ms / 1000 - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def transient_status_error(status: int, response, message: str) -> RetryableError | None:
    """408, 429 and 5xx are worth retrying (honouring Retry-After); None for the others."""
    if status in (408, 429) or status >= 500:
        return RetryableError(message, parse_retry_after(response.headers.get("Retry-After")))
    return None


class RetryPolicy:
    """Exponential backoff with full jitter; Retry-After wins when present (capped)."""

    def __init__(
        self,
        max_retries: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = rng or random.Random()
        # the run's time budget (clock() value): no wait may end past it
        self.deadline = deadline
        self.clock = clock
        self.retries = 0

    @property
    def exchange_deadline(self) -> float | None:
        """The run deadline on the clock send() measures (time.monotonic), if any."""
        return self.deadline if self.clock is time.monotonic else None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def run(self, attempt_fn: Callable[[], Any], what: str, on_retry=None) -> Any:
        """Call attempt_fn until it returns; retry RetryableError; FatalError passes through."""
        attempt = 0
        while True:
            try:
                return attempt_fn()
            except RetryableError as exc:
                if attempt >= self.max_retries:
                    raise GaveUpError(
                        f"{what}: {exc} (gave up after {attempt + 1} attempts)"
                    ) from None
                wait = self.delay(attempt, exc.retry_after)
                if self.deadline is not None and self.clock() + wait > self.deadline:
                    raise PastDeadline(
                        f"{what}: {exc} (the next attempt, in {wait:.1f}s, would pass "
                        "run_time_budget_seconds; the next run resumes)",
                        f"{what}: {exc}",
                    ) from None
                if on_retry is not None:
                    on_retry(what, str(exc), attempt + 1, wait)
                self.retries += 1
                attempt += 1
                self.sleep(wait)
