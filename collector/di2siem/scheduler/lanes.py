"""The run's lanes: ``parallel_orgs`` workers taking turns from one queue in serving order.
Every lane has its own JumpCloud client, SIEM sink, shaper and retry policies (one per side),
and all share the run's deadline, request-rate limiter and service-account token."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from ..engine.context import StreamContext
from ..engine.stream import Stream
from ..intakes import intake_for
from ..intakes.delivery import BatchDelivery
from ..shaping import Shaper
from ..source.client import JumpCloudClient
from ..source.tokens import TokenHolder
from ..throttle import RateLimiter
from ..transport.retry import RetryPolicy
from .plan import Turn

OnRetry = Callable[[str, str, int, float], None]
# serves one turn on a lane: (exit code, whether the whole run must stop, orgs to serve
# alone next in this run)
ServeTurn = Callable[[Turn, "Lane"], "tuple[int, bool, list[str]]"]


class Lane:
    """One of the ``parallel_orgs`` workers and the stream it runs its turns on."""

    def __init__(
        self,
        ctx: StreamContext,
        sleep: Callable[[float], None],
        on_retry: OnRetry,
        limiter: RateLimiter,
        tokens: TokenHolder,
    ) -> None:
        cfg = ctx.cfg
        self.jc_policy, self.sink_policy = (
            RetryPolicy(
                cfg.max_retries,
                cfg.retry_base_delay_seconds,
                cfg.retry_max_delay_seconds,
                sleep,
                deadline=ctx.deadline,
                clock=ctx.clock,
            )
            for _ in range(2)
        )
        self.jc = JumpCloudClient(
            cfg.jumpcloud,
            self.jc_policy,
            on_retry,
            secrets=ctx.log,
            limiter=limiter,
            tokens=tokens,
        )
        intake = intake_for(cfg.siem)
        acks = intake.acknowledgement()
        ledger = ctx.ack_ledger(acks.ledger_name) if acks is not None else None
        self.sink = BatchDelivery(intake, self.sink_policy, on_retry, sleep, ledger)
        # the shaper holds per-page state: one per lane
        self.stream = Stream(ctx, self.jc, self.sink, Shaper(cfg, intake.envelope))

    def retry_counts(self) -> tuple[int, int]:
        """(JumpCloud retries, SIEM retries) of this lane so far."""
        return self.jc_policy.retries, self.sink_policy.retries

    def retries(self) -> int:
        return self.jc_policy.retries + self.sink_policy.retries

    def close(self) -> None:
        self.jc.close()
        self.sink.close()


def orgs_of(turn: Turn) -> tuple[str, ...]:
    return turn if isinstance(turn, tuple) else (turn,)


class Lanes:
    """Serves turns in order with up to ``count`` lanes: a lane takes the next turn (and its
    ticket in the request-rate queue, so turns start in serving order) until none is left,
    the deadline passed, or a turn says the run must stop."""

    def __init__(
        self,
        make_lane: Callable[[], Lane],
        limiter: RateLimiter,
        clock: Callable[[], float],
        deadline: float,
    ) -> None:
        self.make_lane = make_lane
        self.limiter = limiter
        self.clock = clock
        self.deadline = deadline
        self.lanes: list[Lane] = []
        self.stopped = False  # a turn stopped the run (every later write would fail too)

    def serve(self, turns: list[Turn], count: int, serve_turn: ServeTurn) -> tuple[int, deque]:
        """(the worst exit code, the turns left undone)."""
        todo: deque[Turn] = deque(turns)
        guard = threading.Lock()
        stop = threading.Event()
        outcome: dict[str, Any] = {"rc": 0, "error": None}

        def work() -> None:
            lane: Lane | None = None
            try:
                while not stop.is_set() and self.clock() < self.deadline:
                    with guard:
                        if not todo:
                            return
                        turn = todo.popleft()
                        # its first request queues from now: turns start in serving order
                        ticket = self.limiter.ticket()
                    if lane is None:
                        lane = self.make_lane()
                        with guard:
                            self.lanes.append(lane)
                    lane.jc.next_ticket = ticket
                    rc, fatal, alone = serve_turn(turn, lane)
                    with guard:
                        outcome["rc"] = max(outcome["rc"], rc)
                        todo.extendleft(reversed(alone))  # served alone next, this run
                    if fatal:
                        stop.set()
            except BaseException as exc:  # handed to the main thread
                with guard:
                    outcome["error"] = outcome["error"] or exc
                stop.set()

        count = max(1, min(count, len(turns)))
        if count == 1:
            work()
        else:
            threads = [
                threading.Thread(target=work, name=f"di2siem-lane-{n}", daemon=True)
                for n in range(count)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.stopped = stop.is_set()
        if outcome["error"] is not None:
            raise outcome["error"]
        return outcome["rc"], todo

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()
