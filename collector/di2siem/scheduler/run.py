"""One run of the collector over many orgs: the lock, the state loaded and checked, the plan
of turns (least recently served first, caught-up orgs sharing queries: plan.py), the lanes
serving them (lanes.py) under one time budget and one request-rate cap (throttle.py), each
turn's outcome (turn.py), and the run's last line.

Orgs (one stream each: fetch, shape, batch, ship, checkpoint: engine/) are served by
``parallel_orgs`` lanes in least-recently-served order; every lane has its own JumpCloud
client, SIEM sink and retry policies, and all share one time budget and one request-rate
limiter.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from ..config import Config
from ..engine.context import StreamContext
from ..engine.overlap import FAST, Speed
from ..errors import ConfigError, LockHeld, StateError, StateWriteError
from ..log import Logger
from ..perf import tuned_process
from ..source.tokens import TokenHolder
from ..state.deadletter import DeadLetters
from ..state.layout import missing_parent, unsafe_state_dir
from ..state.lock import InstanceLock
from ..state.store import StateStore
from ..throttle import RateLimiter
from ..timeutil import now_ms, parse_ms_or_none
from .lanes import Lane, Lanes, orgs_of
from .plan import Turn, plan_turns
from .progress import Progress
from .runrecord import RunRecorder
from .turn import TurnServer


class Scheduler:
    def __init__(
        self,
        cfg: Config,
        log: Logger,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        speed: Speed = FAST,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.deadline = clock() + cfg.run_time_budget_seconds
        self.limiter = RateLimiter(
            cfg.jumpcloud.max_requests_per_second,
            cfg.retry_base_delay_seconds,
            cfg.retry_max_delay_seconds,
            clock,
        )
        self.tokens = TokenHolder()  # a service account's token, shared by the lanes
        self.store = StateStore(cfg.state_dir, cfg.recent_ids_max)
        self.recorder = RunRecorder(self.store, log)
        self.context = StreamContext(
            cfg, log, self.store, DeadLetters(cfg.state_dir), clock, self.deadline, speed
        )
        self.progress = Progress(log, cfg.jumpcloud.initial_days_back)
        self.turns = TurnServer(cfg, log, self.store, self.recorder, self.progress)
        self.lanes = Lanes(self._new_lane, self.limiter, clock, self.deadline)
        self.lock_held = False  # another run held the lock: this one did nothing

    def _new_lane(self) -> Lane:
        return Lane(self.context, self.sleep, self._on_retry, self.limiter, self.tokens)

    def _on_retry(self, what: str, reason: str, attempt: int, wait: float) -> None:
        self.log.warning("retrying", call=what, reason=reason, attempt=attempt, wait_s=wait)

    # -- entry point -------------------------------------------------------------------------
    def run(self) -> int:
        """Exit code: 0 done / nothing new / lock held / budget reached; 1 failure."""
        prepare_state_dir(self.cfg.state_dir)
        with tuned_process():
            return self._locked_run()

    def _locked_run(self) -> int:
        lock = InstanceLock(self.cfg.state_dir)
        try:
            lock.acquire()
        except LockHeld:
            self.lock_held = True
            return self._lock_held(lock)
        try:
            try:
                self.store.load()
                if self.store.migrated:
                    self.log.info(
                        "state migrated to one file per org",
                        orgs=self.store.migrated,
                        state_dir=self.cfg.state_dir,
                    )
                order = self._serving_order()
                self.store.check_writable(org for turn in order for org in orgs_of(turn))
            except StateError as exc:
                self.log.error(f"state file unusable: {exc}")
                return 1
            except StateWriteError as exc:
                self.log.error(str(exc))
                return 1
            try:
                return self._run_orgs(order)
            finally:
                self.lanes.close()
                self.store.close()
        finally:
            lock.release()

    def _lock_held(self, lock: InstanceLock) -> int:
        """Another run holds the lock: fine (exit 0) unless it has held it far longer than
        any run may take, which means it is stuck: say so, with a failing status."""
        holder = lock.holder()
        stale_s = 2 * self.cfg.run_time_budget_seconds
        if holder is not None and lock.tag() == "backfill":
            self.log.info(
                "a backfill holds the lock; this run leaves the state to it, the next run "
                "after it resumes from the cursor",
                lock=lock.path,
                holder_pid=holder[0],
            )
            return 0
        if holder is not None and holder[1] is not None:
            pid, started_ms = holder
            age_s = round(max(0, now_ms() - started_ms) / 1000, 1)
            if age_s > stale_s:
                self.log.warning(
                    "another run has held the lock for longer than twice "
                    "run_time_budget_seconds: it looks stuck; check that process (kill it "
                    "to resume, the state keeps every accepted batch)",
                    lock=lock.path,
                    holder_pid=pid,
                    holder_age_s=age_s,
                    run_time_budget_seconds=self.cfg.run_time_budget_seconds,
                )
                return 1
            self.log.info(
                "another run holds the lock; exiting",
                lock=lock.path,
                holder_pid=pid,
                holder_age_s=age_s,
            )
            return 0
        self.log.info("another run holds the lock; exiting", lock=lock.path)
        return 0

    def _run_orgs(self, turns: list[Turn]) -> int:
        """Serve the turns in order with up to parallel_orgs lanes; the worst exit code."""
        started = time.monotonic()
        with self.progress:
            rc, todo = self.lanes.serve(turns, self.cfg.parallel_orgs, self.turns.serve)
        served = self.turns
        left = sum(len(orgs_of(turn)) for turn in todo) + served.unserved
        if left and not self.lanes.stopped:
            self.log.info(
                "run time budget reached; remaining orgs wait for the next run", orgs_left=left
            )
        self.log.info(
            "run finished",
            orgs_served=len(self.recorder.finished),
            orgs_left=left,
            shared_queries=len(served.shared_turns),
            orgs_in_shared_queries=sum(served.shared_turns),
            jumpcloud_requests=self.limiter.requests,
            duration_s=round(time.monotonic() - started, 3),
        )
        return rc

    def _serving_order(self) -> list[Turn]:
        """The run's turns: least recently served org first (never served: first of all, in
        config order), so that a long backfill of one org, cut by the run time budget, cannot
        starve the others: orgs that use up the budget take turns. Caught-up orgs share
        queries (plan.py); a group takes the place of its least recently served member."""
        orgs = list(self.cfg.org_keys)
        metas = {org: self.store.meta(org) for org in orgs}
        served = {org: parse_ms_or_none((metas[org] or {}).get("served")) for org in orgs}
        order = sorted(orgs, key=lambda org: served.get(org) or -1)
        return plan_turns(
            order,
            metas,
            self.context.overlap_ms,
            self.cfg.jumpcloud.shared_query_max_orgs,
            now_ms(),
            self.cfg.jumpcloud.initial_days_back,
        )


def prepare_state_dir(state_dir: str) -> None:
    """state_dir made when missing (itself, 0700, never its parents), writable by this user
    and safe (see unsafe_state_dir); ConfigError naming state_dir otherwise."""
    if not os.path.isdir(state_dir):
        _create_state_dir(state_dir)
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise ConfigError(
            "state_dir",
            f"{state_dir} is not writable by this user",
            "fix its owner/mode or set state_dir",
        )
    unsafe = unsafe_state_dir(state_dir)
    if unsafe is not None:
        raise ConfigError("state_dir", *unsafe)


def _create_state_dir(state_dir: str) -> None:
    missing = missing_parent(state_dir)
    if missing is not None:
        raise ConfigError("state_dir", f"{missing[0]} (nothing was created)", missing[1])
    try:
        os.mkdir(state_dir, mode=0o700)
    except OSError as exc:
        if os.path.isdir(state_dir):  # another run made it meanwhile
            return
        raise ConfigError(
            "state_dir",
            f"cannot create {state_dir} ({exc.strerror})",
            "set state_dir to a directory the service user can write",
        ) from None
