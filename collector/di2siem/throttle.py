"""One request-rate cap for every JumpCloud query of a run, whichever org sends it
(``jumpcloud.max_requests_per_second``), and one pause for all after a 429.

JumpCloud publishes no rate limit; requests, not threads, are the scarce resource. The cap is
a token bucket of ``BURST`` requests refilled at ``rate`` a second: a run's first ``BURST``
requests start at once (an empty poll's clock probe and its one query, without waiting
``1 / rate`` between them), every later one waits for a token, so in any window of ``t``
seconds at most ``rate * t + BURST`` start and the sustained rate is ``rate``. The burst is a
fixed 2, not a share of the rate: at the cap of 100 a rate-sized burst would be 200 requests
in a run's first second. Runs hold the state lock one at a time (cron starts one a minute),
so across runs the burst adds at most 2 requests a minute. A 429 pauses every org until its
Retry-After (else an exponential backoff that grows with consecutive 429s and resets on the
next answer that is not one) and empties the bucket: after the pause requests start ``1 /
rate`` apart again, no burst. Orgs do not take turns hammering a server that asked everyone
to slow down.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Callable

from .errors import WaitPastBudget

BURST = 2  # requests a run may start at once (see above); the sustained rate is the cap


class RateLimiter:
    """Requests take turns first come, first served (a ticket each); an org's first request
    may use the ticket it drew when the org was picked (``ticket()``), so orgs get their
    first request in serving order however their lanes race."""

    def __init__(
        self,
        rate: float,
        base_backoff: float = 1.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        burst: int = BURST,
    ) -> None:
        self.interval = 1.0 / rate
        # the bucket as one time (GCRA): a request may start once the clock reaches
        # _tat - _slack; each start moves _tat one interval on (from now, if it lay behind)
        self._slack = (max(1, burst) - 1) * self.interval
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._cond = threading.Condition()
        self._tat = clock()  # the bucket's theoretical arrival time: full at the start
        self._paused_until = 0.0
        self._refusals = 0  # consecutive 429s
        self._seq = 0
        self._waiting: list[int] = []  # tickets of the requests waiting (a heap)
        self.requests = 0
        self.pauses = 0

    def ticket(self) -> int:
        """A place in the queue, drawn now and used by a later acquire()."""
        with self._cond:
            self._seq += 1
            return self._seq

    def acquire(self, deadline: float | None = None, ticket: int | None = None) -> None:
        """Wait for this request's turn; raises WaitPastBudget when it would come after
        ``deadline`` (a clock() value)."""
        with self._cond:
            if ticket is None:
                self._seq += 1
                ticket = self._seq
            heapq.heappush(self._waiting, ticket)
            try:
                while True:
                    now = self.clock()
                    start = max(self._tat - self._slack, self._paused_until)
                    first = self._waiting[0] == ticket
                    if first and start <= now:
                        heapq.heappop(self._waiting)
                        self._tat = max(self._tat, now) + self.interval
                        self.requests += 1
                        self._cond.notify_all()
                        return
                    if deadline is not None and start > deadline:
                        raise WaitPastBudget(
                            "JumpCloud: the request-rate cap (jumpcloud.max_requests_per_second)"
                            " or a 429 pause reaches past run_time_budget_seconds"
                        )
                    # the first in line sleeps until its start (a 429 wakes it early); the
                    # others until they are first
                    self._cond.wait(max(0.0, start - now) if first else 1.0)
            except BaseException:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    heapq.heapify(self._waiting)
                    self._cond.notify_all()
                raise

    def refused(self, retry_after: float | None) -> float:
        """A 429: pause every org; returns the pause in seconds."""
        with self._cond:
            self._refusals += 1
            if retry_after is not None:
                pause = min(retry_after, self.max_backoff)
            else:
                pause = min(self.max_backoff, self.base_backoff * 2 ** (self._refusals - 1))
            self._paused_until = max(self._paused_until, self.clock() + pause)
            # the bucket empty at the pause's end: one request then, the next 1/rate later
            self._tat = max(self._tat, self._paused_until + self._slack)
            self.pauses += 1
            self._cond.notify_all()
        return pause

    def answered(self) -> None:
        """Any answer but a 429: the backoff starts small again."""
        if self._refusals:
            with self._cond:
                self._refusals = 0
