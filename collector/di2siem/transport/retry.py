"""The retry policy: which failures are worth another attempt, Retry-After, and exponential
backoff with full jitter that never waits past the run's time budget; a failure to connect at
all (NoConnection) gets a few quick attempts instead of the whole schedule."""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from ..errors import GaveUpError, NoConnection, PastDeadline, RetryableError, Unreachable
from ..timeutil import parse_http_date_ms

# The waits before the attempts after a NoConnection (refused, a name that does not resolve,
# no route): three attempts within about a second, then the run fails with the cause. The
# full schedule is for a request that may have arrived or a peer that is slow; a refusal is
# the peer's host answering at once that nobody listens, which waiting 20 s does not change
# (the next scheduled run tries again), while it hides the plain cause from whoever watches.
# The quick attempts cover a receiver restarting or one lost DNS answer.
NO_CONNECTION_WAITS_S = (0.25, 0.75)


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
        unconnected = 0  # NoConnection failures in a row
        while True:
            try:
                return attempt_fn()
            except RetryableError as exc:
                unconnected = unconnected + 1 if isinstance(exc, NoConnection) else 0
                if attempt >= self.max_retries or unconnected > len(NO_CONNECTION_WAITS_S):
                    raise _gave_up(what, exc, attempt + 1) from None
                if unconnected:
                    wait = NO_CONNECTION_WAITS_S[unconnected - 1]
                else:
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


def _gave_up(what: str, exc: RetryableError, attempts: int) -> GaveUpError:
    if isinstance(exc, NoConnection):
        return Unreachable(
            f"{what}: {exc} (gave up after {attempts} attempts; no connection could be made, "
            "so nothing was sent)",
            side=exc.side,
        )
    return GaveUpError(f"{what}: {exc} (gave up after {attempts} attempts)", side=exc.side)
