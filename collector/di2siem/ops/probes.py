"""One deadline for the commands that ask one question per org: ``status --online`` (a count
per org) and online ``check`` (a probe per org, and the SIEM).

Whatever the number of orgs, such a command ends within ``deadline_seconds(timeout)``
(``PROBE_DEADLINE``): no request starts later than ``DEADLINE_TIMEOUTS * timeout_seconds``
after the command began, and each request ends within its own ``timeout_seconds`` (send()
cuts it at the latest ``BUDGET_GRACE_S`` after that point), so a JumpCloud that never
answers costs the same for 3 orgs as for 300. Orgs are probed side by side, up to
``parallel_orgs`` at once, under the run's request-rate cap (``RateLimiter``); an org whose
probe got no answer by then is named as not reached.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any, Callable, TypeVar

from ..errors import (
    BudgetExceeded,
    GaveUpError,
    NotReached,
    PastDeadline,
    Unreachable,
    WaitPastBudget,
)
from ..transport.exchange import BUDGET_GRACE_S

DEADLINE_TIMEOUTS = 2  # requests may start during this many timeout_seconds
PROBE_DEADLINE = "2 * timeout_seconds + min(timeout_seconds, 5 s)"
Key = TypeVar("Key", bound=Hashable)


def deadline_seconds(timeout: float) -> float:
    """The wall-clock bound of ``status --online`` / ``check``'s probes (PROBE_DEADLINE)."""
    return DEADLINE_TIMEOUTS * timeout + min(timeout, BUDGET_GRACE_S)


class Deadline:
    """``last_start``: no request starts after it (a RetryPolicy / RateLimiter deadline);
    ``ends``: every request has ended by then, answered or cut."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = deadline_seconds(timeout)
        started = clock()
        self.last_start = started + DEADLINE_TIMEOUTS * timeout
        self.ends = started + self.seconds

    @property
    def label(self) -> str:
        return f"{self.seconds:g} s deadline"

    def passed(self) -> bool:
        return self.clock() >= self.last_start


# what side_by_side records for a probe: its result, or the exception it raised
Outcome = Any


def side_by_side(
    keys: Sequence[Key],
    start_worker: Callable[[], tuple[Callable[[Key], Any], Callable[[], None]]],
    workers: int,
    deadline: Deadline,
) -> dict[Key, Outcome]:
    """Run ``probe(key)`` for every key on up to ``workers`` threads, each with its own
    ``(probe, close) = start_worker()`` (a client per thread: sessions are not shared);
    return each key's result or exception by ``deadline.ends`` at the latest. A key whose
    turn comes after ``deadline.last_start`` is not probed, one still in flight at
    ``deadline.ends`` is not waited for: both are a NotReached."""
    return SideBySide(keys, start_worker, workers, deadline).outcomes()


class SideBySide:
    """side_by_side, started now and collected later (``outcomes()``), so the caller can do
    something else meanwhile. The threads are daemons: one stuck where no socket deadline
    reaches (a DNS lookup) cannot hold the process past the deadline."""

    def __init__(
        self,
        keys: Sequence[Key],
        start_worker: Callable[[], tuple[Callable[[Key], Any], Callable[[], None]]],
        workers: int,
        deadline: Deadline,
    ) -> None:
        self.keys = list(keys)
        self.deadline = deadline
        self._start_worker = start_worker
        self._pending = deque(self.keys)
        self._outcomes: dict[Key, Outcome] = {}
        self._done = threading.Condition()
        for number in range(max(1, min(workers, len(self.keys)))):
            threading.Thread(target=self._work, name=f"di2siem-probe-{number}", daemon=True).start()

    def _work(self) -> None:
        done = self._done
        close: Callable[[], None] | None = None
        try:
            probe, close = self._start_worker()
            while True:
                with done:
                    if not self._pending:
                        return
                    key = self._pending.popleft()
                outcome: Outcome
                if self.deadline.passed():
                    outcome = NotReached("its turn did not come before the deadline")
                else:
                    try:
                        outcome = probe(key)
                    except Exception as exc:  # recorded, reported by the caller
                        outcome = exc
                with done:
                    self._outcomes[key] = outcome
                    done.notify_all()
        except Exception as exc:  # the worker could not start: the keys left fail with it
            with done:
                while self._pending:
                    self._outcomes[self._pending.popleft()] = exc
                done.notify_all()
        finally:
            if close is not None:
                close()

    def outcomes(self) -> dict[Key, Outcome]:
        """Every key's outcome, waiting for them until ``deadline.ends`` at the latest."""
        done, deadline = self._done, self.deadline
        with done:
            while len(self._outcomes) < len(self.keys):
                left = deadline.ends - deadline.clock()
                if left <= 0:
                    break
                done.wait(left)
            missing = NotReached("no answer before the deadline")
            return {key: self._outcomes.get(key, missing) for key in self.keys}


def unreached_cause(outcome: Outcome, side: str) -> str | None:
    """Why a probe of ``side`` (JumpCloud, SIEM) got no answer within the deadline; None
    when it got one (a result, or a refusal such as a 401: a FatalError). Timeouts, cut
    exchanges, retries given up and probes whose turn never came are not reached; a peer no
    connection could be made to (Unreachable: refused, no such name) failed at once, and its
    cause says so."""
    if isinstance(outcome, Unreachable):
        return None
    if isinstance(outcome, NotReached):
        return str(outcome)
    if isinstance(outcome, PastDeadline):
        return f"{outcome.cause} (no time left for another attempt)"
    if isinstance(outcome, BudgetExceeded):
        return f"{side} did not finish answering before the deadline"
    if isinstance(outcome, WaitPastBudget):
        return (
            "the request-rate cap (jumpcloud.max_requests_per_second) or a 429 pause left "
            "it no turn before the deadline"
        )
    if isinstance(outcome, GaveUpError):
        return str(outcome)
    return None
