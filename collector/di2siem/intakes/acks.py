"""Waiting for an intake's acknowledgement (Intake.acknowledgement; Splunk HEC indexer
acknowledgement), for delivery.py.

A batch the intake took with an ack id waits here; it counts as delivered, and is handed to
its ``on_accepted``, only once the intake says the id is done, strictly in submission order
(a later batch acknowledged first waits for the ones before it). At most ``max_pending``
batches wait at once: posting another first waits for room. One still unacknowledged
``timeout_s`` after it was sent is sent again (it keeps its place). The waiting batches are
kept in the ledger (state/acks.py), so a run that ends while they wait leaves them to the next
one, which asks about them before it posts anything: confirmed ones are recorded when their
events are read again, without sending them; the others are sent again. No wait ends past the
run's deadline: then BudgetReached, the batches stay in the ledger.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ..batching import Item
from ..errors import BudgetReached
from ..state.acks import AckLedger, Waiting
from ..transport.retry import RetryPolicy
from .base import AckSettings

# (channel, ack ids) -> {ack id: done}
Query = Callable[[str, list[int]], "dict[int, bool]"]
# a batch's items -> the ack id of its new copy
Resend = Callable[[list[Item]], int]


@dataclass
class InFlight:
    items: list[Item]
    on_accepted: Callable[[list[Item]], None]
    waiting: Waiting


class AckWaiter:
    def __init__(
        self,
        settings: AckSettings,
        ledger: AckLedger,
        policy: RetryPolicy,
        query: Query,
        resend: Resend,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.policy = policy
        self.query = query
        self.resend = resend
        self.inflight: deque[InFlight] = deque()
        self.resent_batches = 0  # sent again after ack_timeout
        self.recorded_unsent = 0  # events a previous run's confirmed batch covered

    # -- the run's own batches ------------------------------------------------------------------
    def sent(self, items: list[Item], on_accepted, ack_id: int) -> None:
        keys = {item[1] for item in items if item[1] is not None}
        waiting = Waiting(self.settings.channel, ack_id, time.time(), keys)
        self.ledger.add(waiting)
        self.inflight.append(InFlight(items, on_accepted, waiting))

    def make_room(self) -> None:
        """Before a post: previous runs' batches resolved, fewer than max_pending waiting."""
        self.resolve_previous()
        while len(self.inflight) >= self.settings.max_pending:
            self._round()

    def settle(self) -> None:
        """Every waiting batch acknowledged (and recorded), or BudgetReached."""
        while self.inflight:
            self._round()

    def _round(self) -> None:
        """Ask once, record the acknowledged head, resend the timed out; else wait a poll."""
        flights = [f for f in self.inflight if not f.waiting.acked]
        if flights:
            done = self._ask(self.settings.channel, [f.waiting.ack_id for f in flights])
            for f in flights:
                if done.get(f.waiting.ack_id):
                    f.waiting.acked = True
        progressed = False
        while self.inflight and self.inflight[0].waiting.acked:
            head = self.inflight.popleft()
            head.on_accepted(head.items)  # recorded first: a kill now costs no copy
            self.ledger.remove(head.waiting)
            progressed = True
        now = time.time()
        for f in self.inflight:
            w = f.waiting
            if not w.acked and now - w.sent_s >= self.settings.timeout_s:
                w.ack_id = self.resend(f.items)
                w.sent_s = time.time()
                self.resent_batches += 1
                self.ledger.update()
                progressed = True
        if not progressed:
            self._pause()

    def _ask(self, channel: str, ack_ids: list[int]) -> dict[int, bool]:
        return self.policy.run(lambda: self.query(channel, ack_ids), "SIEM ack query")

    def _pause(self) -> None:
        policy = self.policy
        if policy.deadline is not None and policy.clock() + self.settings.poll_s > policy.deadline:
            raise BudgetReached(
                f"{len(self.inflight)} batch(es) still await the SIEM's acknowledgement at the "
                "end of run_time_budget_seconds; the next run confirms or resends them"
            )
        policy.sleep(self.settings.poll_s)

    # -- what earlier runs left -----------------------------------------------------------------
    def resolve_previous(self) -> None:
        """Ask about the batches earlier runs left waiting (once per run, for every lane):
        each is confirmed or lost (unacknowledged ``timeout_s`` after it was sent)."""
        ledger = self.ledger
        with ledger.lock:
            if ledger.resolved:
                return
            pending = [w for w in ledger.load_previous() if not w.acked]
            confirmed = [w for w in ledger.load_previous() if w.acked]
            lost: list[Waiting] = []
            while pending:
                for channel in {w.channel for w in pending}:
                    mine = [w for w in pending if w.channel == channel]
                    done = self._ask(channel, [w.ack_id for w in mine])
                    confirmed += [w for w in mine if done.get(w.ack_id)]
                now = time.time()
                lost += [
                    w
                    for w in pending
                    if w not in confirmed and now - w.sent_s >= self.settings.timeout_s
                ]
                pending = [w for w in pending if w not in confirmed and w not in lost]
                if pending:
                    self._pause()
            ledger.settle_previous(confirmed, lost)
            ledger.resolved = True

    def take_confirmed(self, items: list[Item]) -> list[Item]:
        """Items a previous run's confirmed batch covered are recorded (by the caller's
        ``on_accepted``, returned here) instead of sent."""
        confirmed = self.ledger.confirmed
        if not confirmed:
            return []
        return [item for item in items if item[1] in confirmed]
