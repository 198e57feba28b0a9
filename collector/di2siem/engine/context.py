"""What a stream works with: the run-wide context (config, state, clock, deadline, speed)
and one org's counters and shipping bookkeeping within the run (``OrgRun``)."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Callable

from ..config import Config
from ..log import Logger
from ..state.deadletter import DeadLetters
from ..state.orgstate import OrgState
from ..state.store import StateStore

if TYPE_CHECKING:
    from ..source.client import JumpCloudClient
    from ..state.acks import AckLedger
    from .overlap import Speed

MAX_DETAIL_WARNINGS = 10


class DetailWarnings:
    """Per-event warnings of the whole run: the first ``MAX_DETAIL_WARNINGS``, then one line
    saying the rest are suppressed."""

    def __init__(self, log: Logger) -> None:
        self.log = log
        self.count = 0
        self._lock = threading.Lock()

    def warn(self, message: str, **fields: object) -> None:
        with self._lock:
            self.count += 1
            count = self.count
        if count <= MAX_DETAIL_WARNINGS:
            self.log.warning(message, **fields)
        elif count == MAX_DETAIL_WARNINGS + 1:
            self.log.warning("further per-event warnings suppressed; see the run summary")


class StreamContext:
    """The run-wide things every org's stream shares: settings, log, state store, dead
    letters, the run's clock and deadline, and the speed wrappers (overlap.Speed)."""

    def __init__(
        self,
        cfg: Config,
        log: Logger,
        store: StateStore,
        dead_letters: DeadLetters,
        clock: Callable[[], float],
        deadline: float,
        speed: Speed,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.store = store
        self.dead_letters = dead_letters
        self.clock = clock
        self.deadline = deadline
        self.speed = speed
        self.overlap_ms = int(cfg.jumpcloud.overlap_seconds * 1000)
        self.details = DetailWarnings(log)
        self._ack_ledgers: dict[str, AckLedger] = {}
        self._ack_lock = threading.Lock()

    def ack_ledger(self, name: str) -> AckLedger:
        """The run's one ledger of batches awaiting an acknowledgement (state/acks.py), in
        state_dir/<name>, shared by every lane."""
        from ..state.acks import AckLedger  # only runs that wait for acknowledgements

        with self._ack_lock:
            ledger = self._ack_ledgers.get(name)
            if ledger is None:
                path = os.path.join(self.cfg.state_dir, name)
                ledger = self._ack_ledgers[name] = AckLedger(path)
            return ledger

    def past_deadline(self) -> bool:
        return self.clock() >= self.deadline


class OrgRun:
    """Counters and the shipping bookkeeping of one org within one run."""

    def __init__(self, org: str, state: OrgState, source: JumpCloudClient) -> None:
        self.org = org
        self.state = state
        self.source = source  # the client reading it: its clock bounds the checkpoint
        self.fetched = 0
        self.shipped = 0
        self.duplicates = 0
        self.skipped = 0
        self.deep = 0
        self.batches = 0
        self.retries = 0
        self.resent = 0
        self.untimed = 0
        self.dead_lettered = 0
        self.started = time.monotonic()
        self.served_before = state.served_ms  # restored when the turn did not count
        self.status = "ok"
        self.error: BaseException | None = None  # why status is "failed"
        self.ops_totals: Callable[[], dict[str, int]] = dict  # lifetime totals so far
        # keys handed to the sender and not yet recorded in the state (read by the main
        # thread, emptied by the sender once the state holds them)
        self.pending: set[str] = set()

    def end(self, status: str, error: BaseException | None = None) -> None:
        self.status, self.error = status, error
