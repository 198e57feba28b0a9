"""The retry policy: which failures are worth another attempt, Retry-After, and exponential
backoff with full jitter that never waits past the run's time budget."""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from ..errors import GaveUpError, PastDeadline, RetryableError
from ..timeutil import parse_http_date_ms


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


def transient_status_error(status: int, response, message: str, side: str) -> RetryableError | None:
    """408, 429 and 5xx are worth retrying (honouring Retry-After); None for the others."""
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RetryableError(message, retry_after, side=side)
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
                        f"{what}: {exc} (gave up after {attempt + 1} attempts)", side=exc.side
                    ) from None
                wait = self.delay(attempt, exc.retry_after)
                if self.deadline is not None and self.clock() + wait > self.deadline:
                    raise PastDeadline(
                        f"{what}: {exc} (the next attempt, in {wait:.1f}s, would pass "
                        "run_time_budget_seconds; the next run resumes)",
                        f"{what}: {exc}",
                        side=exc.side,
                    ) from None
                if on_retry is not None:
                    on_retry(what, str(exc), attempt + 1, wait)
                self.retries += 1
                attempt += 1
                self.sleep(wait)
