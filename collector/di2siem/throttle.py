"""One request-rate cap for every JumpCloud query of a run, whichever org sends it
(``jumpcloud.max_requests_per_second``), and one pause for all after a 429.

JumpCloud publishes no rate limit; requests, not threads, are the scarce resource. Requests
are spaced at least ``1 / rate`` seconds apart (no bursts), so in any window of ``t`` seconds
at most ``rate * t + 1`` start. A 429 pauses every org until its Retry-After (else an
exponential backoff that grows with consecutive 429s and resets on the next answer that is
not one): orgs do not take turns hammering a server that asked everyone to slow down.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class WaitPastBudget(Exception):
    """The next request could start only after the run's time budget (rate cap or pause)."""


class RateLimiter:
    def __init__(
        self,
        rate: float,
        base_backoff: float = 1.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._next = clock()  # the earliest start of the next request
        self._paused_until = 0.0
        self._refusals = 0  # consecutive 429s
        self.requests = 0
        self.pauses = 0

    def acquire(self, deadline: float | None = None) -> None:
        """Wait for this request's turn; raises WaitPastBudget when it would come after
        ``deadline`` (a clock() value)."""
        while True:
            with self._lock:
                now = self.clock()
                start = max(self._next, self._paused_until)
                if start <= now:
                    self._next = now + self.interval
                    self.requests += 1
                    return
            if deadline is not None and start > deadline:
                raise WaitPastBudget(
                    "JumpCloud: the request-rate cap (jumpcloud.max_requests_per_second) or a "
                    "429 pause reaches past run_time_budget_seconds"
                )
            self.sleep(start - now)  # then compete again: a 429 may have paused everyone

    def refused(self, retry_after: float | None) -> float:
        """A 429: pause every org; returns the pause in seconds."""
        with self._lock:
            self._refusals += 1
            if retry_after is not None:
                pause = min(retry_after, self.max_backoff)
            else:
                pause = min(self.max_backoff, self.base_backoff * 2 ** (self._refusals - 1))
            self._paused_until = max(self._paused_until, self.clock() + pause)
            self.pauses += 1
        return pause

    def answered(self) -> None:
        """Any answer but a 429: the backoff starts small again."""
        if self._refusals:
            with self._lock:
                self._refusals = 0
