"""One poll-and-ship cycle: for each org, stream pages, drop duplicates, batch, ship, save.

Invariants:
- the cursor (and the ids it covers) are saved only after the SIEM accepted a batch, one
  batch at a time, so a failure or kill -9 at any instant re-sends at most the batch in flight;
- every run re-reads ``overlap_seconds`` behind the cursor and drops already-shipped ids;
- every event has an identity: the API's id, else a digest of its exact text (``event_key``);
  identities handed to the sender stay remembered until they are recorded;
- the cursor only moves to event times the fetch really covered: never past JumpCloud's own
  clock (the Date header of its last answer), never for an event whose time cannot be read
  or represented; the host clock never sets it;
- memory holds at most two pages (one processed, the next fetched), two batches (one posted,
  one queued) and the bounded recent-id memory, whatever the backlog: per org being served,
  and at most ``parallel_orgs`` orgs are served at once.

Orgs (one stream each: fetch, shape, batch, ship, checkpoint) are served by ``parallel_orgs``
lanes in least-recently-served order; every lane has its own JumpCloud client, SIEM sink and
retry policies, and all share one time budget and one request-rate limiter (throttle.py).
"""

from __future__ import annotations

import hashlib
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple

from .batching import Batcher, Item, Oversize
from .config import DEFAULT_ORG, Config, ConfigError
from .grouping import Turn, plan_turns
from .log import Logger
from .runrecord import RunRecorder
from .shaping import Shaper, too_deep
from .shared import UNPARSABLE, SharedStream
from .sink import Sink
from .source.client import JumpCloudClient
from .source.pages import NONSTANDARD
from .source.refusals import OrgRefused, scope_name
from .source.tokens import TokenHolder
from .state.deadletter import DeadLetters
from .state.layout import StateError, StateWriteError, unsafe_state_dir
from .state.lock import InstanceLock, LockHeld
from .state.orgstate import OrgState
from .state.store import StateStore
from .throttle import RateLimiter, WaitPastBudget
from .timeutil import MAX_MS, format_ms, now_ms, parse_ms, parse_ms_or_none
from .transport.exchange import BudgetExceeded
from .transport.retry import FatalError, GaveUpError, RetryPolicy

DAY_MS = 86_400_000
MAX_DETAIL_WARNINGS = 10
SKEW_WARN_MS = 30_000
PROBE_MARGIN_MS = 3_600_000  # warn when JumpCloud's clock and ours differ by more than this
DIGEST_PREFIX = "blake2b:"  # event keys of id-less events; JumpCloud ids are 24 hex digits
# a stored cursor or floor at most this far ahead of JumpCloud's clock is clock resolution
# (its Date header has whole seconds) and stays as it is; further ahead, the org fails
AHEAD_TOLERANCE_MS = 2_000


def event_key(event_id: object, raw: str) -> str:
    """An event's identity: its id, else a digest of its exact text (a stable key for
    events the API sends without one, so the id memory covers them too)."""
    if type(event_id) is str and event_id:
        return event_id
    if type(event_id) is int:
        return str(event_id)
    return (
        DIGEST_PREFIX
        + hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    )


class BudgetReached(Exception):
    pass


class PositionAhead(FatalError):
    """An org's stored cursor or floor lies ahead of JumpCloud's clock: where the org really
    got to is unknown, so nothing is read (jumping to now would skip the events since then)
    until an operator sets it; each run fails the org with this line, other orgs go on."""

    side = "state"


def _orgs_of(turn: Turn) -> tuple[str, ...]:
    return turn if isinstance(turn, tuple) else (turn,)


def peak_rss_mb() -> float | None:
    """This process's own peak RSS (VmHWM; unlike ru_maxrss it excludes the pre-exec image
    of the parent that forked us)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def tame_malloc() -> None:
    """Keep RSS flat on glibc: a fixed mmap threshold (so every page-sized buffer goes back
    to the kernel when freed, instead of glibc raising the threshold and growing the heap)
    and few per-thread arenas. Best effort; a no-op elsewhere."""
    if os.environ.get("DI2SIEM_NO_MALLOPT"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-1, 16 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


class Lane:
    """One of the ``parallel_orgs`` workers: its own JumpCloud client, SIEM sink, shaper and
    retry policies (one per side: used by the fetch thread / the send thread of the org it serves),
    sharing the run's deadline and request-rate limiter."""

    def __init__(self, pipeline: Pipeline) -> None:
        cfg = pipeline.cfg
        self.jc_policy, self.sink_policy = (
            RetryPolicy(
                cfg.max_retries,
                cfg.retry_base_delay_seconds,
                cfg.retry_max_delay_seconds,
                pipeline.sleep,
                deadline=pipeline.deadline,
                clock=pipeline.clock,
            )
            for _ in range(2)
        )
        self.jc = JumpCloudClient(
            cfg.jumpcloud,
            self.jc_policy,
            pipeline._on_retry,
            secrets=pipeline.log,
            limiter=pipeline.limiter,
            tokens=pipeline.tokens,
        )
        self.sink = Sink(cfg.siem, self.sink_policy, pipeline._on_retry, pipeline.sleep)
        self.shaper = Shaper(cfg)  # holds per-page state: one per lane

    def retries(self) -> int:
        return self.jc_policy.retries + self.sink_policy.retries

    def close(self) -> None:
        self.jc.close()
        self.sink.close()


class OrgRun:
    """Counters and the shipping bookkeeping of one org within one run."""

    def __init__(self, org: str, state: OrgState, lane: Lane) -> None:
        self.org = org
        self.state = state
        self.lane = lane
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


class Defect(NamedTuple):
    """An element of a JumpCloud page that can never be an event (jumpcloud.UNPARSABLE)."""

    text: str
    reason: str


BATCH = "batch"
SKIP = "skip"
SKIPPED = object()
_END = object()


class Prefetcher:
    """Runs a page generator in a thread, at most one page ahead of the consumer: the next
    page is fetched while the current one is processed, never two (memory stays flat)."""

    def __init__(self, gen: Iterator) -> None:
        self.gen = gen
        self.queue: queue.Queue = queue.Queue()
        self.slot = threading.Semaphore(1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._work, name="di2siem-fetch", daemon=True)
        self.thread.start()

    def _wait_slot(self) -> bool:
        while not self.stopped.is_set():
            if self.slot.acquire(timeout=0.1):
                return True
        return False

    def _work(self) -> None:
        try:
            it = iter(self.gen)
            while self._wait_slot():
                try:
                    page = next(it)
                except StopIteration:
                    self.queue.put(_END)
                    return
                self.queue.put(page)
                page = None
        except BaseException as exc:  # handed to the consumer
            self.queue.put(exc)

    def __iter__(self) -> Iterator:
        while True:
            value = self.queue.get()
            self.slot.release()  # taken: the producer may fetch the next page
            if value is _END:
                return
            if isinstance(value, BaseException):
                raise value
            yield value
            value = None

    def stop(self) -> None:
        self.stopped.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass


class Sender:
    """Posts batches in order in a thread and records each accepted one in the state.

    At most one batch waits while another is in flight; the state is only ever written by
    this thread, after the SIEM accepted a batch."""

    def __init__(
        self,
        sink: Sink,
        accepted: Callable[[list], None],
        skipped: Callable[[Any], None],
    ) -> None:
        self.sink = sink
        self.accepted = accepted  # records an accepted batch
        self.skipped = skipped  # records an event too large to post
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="di2siem-send", daemon=True)
        self.thread.start()
        self.finished = False

    def _work(self) -> None:
        while True:
            kind, payload = self.queue.get()
            if kind is _END:
                return
            if self.error is not None:
                continue  # drain without shipping after a failure
            try:
                if kind == SKIP:
                    self.skipped(payload)
                else:
                    self.sink.ship(payload, self.accepted)
            except BaseException as exc:
                self.error = exc

    def submit(self, kind: str, payload: object) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put((kind, payload), timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until everything handed over is handled; raise the sender's error if any."""
        if not self.finished:
            self.finished = True
            self.queue.put((_END, None))
            self.thread.join()
        if self.error is not None:
            raise self.error


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        log: Logger,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
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
        self.lanes: list[Lane] = []
        self.unserved = 0  # orgs whose turn the rate cap cut before their first request
        self._turned: set[str] = set()  # orgs whose turn began this run
        self.shared_turns: list[int] = []  # the size of each shared query served
        self._unserved_lock = threading.Lock()
        self.store = StateStore(cfg.state_dir, cfg.recent_ids_max)
        self.overlap_ms = int(cfg.jumpcloud.overlap_seconds * 1000)
        self._warnings = 0
        self._skew_warned = False
        self.recorder = RunRecorder(self)
        self.dead_letters = DeadLetters(cfg.state_dir)
        self.lock_held = False  # another run held the lock: this one did nothing

    # -- helpers -----------------------------------------------------------------------------
    def _on_retry(self, what: str, reason: str, attempt: int, wait: float) -> None:
        self.log.warning("retrying", call=what, reason=reason, attempt=attempt, wait_s=wait)

    def _detail_warning(self, message: str, **fields) -> None:
        self._warnings += 1
        if self._warnings <= MAX_DETAIL_WARNINGS:
            self.log.warning(message, **fields)
        elif self._warnings == MAX_DETAIL_WARNINGS + 1:
            self.log.warning("further per-event warnings suppressed; see the run summary")

    def _prepare_state_dir(self) -> None:
        try:
            os.makedirs(self.cfg.state_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                "state_dir",
                f"cannot create {self.cfg.state_dir} ({exc.strerror})",
                "set state_dir to a directory the service user can write",
            ) from None
        if not os.access(self.cfg.state_dir, os.W_OK | os.X_OK):
            raise ConfigError(
                "state_dir",
                f"{self.cfg.state_dir} is not writable by this user",
                "fix its owner/mode or set state_dir",
            )
        unsafe = unsafe_state_dir(self.cfg.state_dir)
        if unsafe is not None:
            raise ConfigError("state_dir", *unsafe)

    # -- entry point -------------------------------------------------------------------------
    def run(self) -> int:
        """Exit code: 0 done / nothing new / lock held / budget reached; 1 failure."""
        self._prepare_state_dir()
        tame_malloc()
        # three threads share the GIL (fetch+parse, batch, post+record); a short switch
        # interval lets the I/O threads resume soon after their socket answers
        switch = sys.getswitchinterval()
        sys.setswitchinterval(0.001)
        try:
            return self._locked_run()
        finally:
            sys.setswitchinterval(switch)

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
                self.store.check_writable(org for turn in order for org in _orgs_of(turn))
            except StateError as exc:
                self.log.error(f"state file unusable: {exc}")
                return 1
            except StateWriteError as exc:
                self.log.error(str(exc))
                return 1
            try:
                return self._run_orgs(order)
            finally:
                for lane in self.lanes:
                    lane.close()
                self.store.close()
        finally:
            lock.release()

    def _lock_held(self, lock: InstanceLock) -> int:
        """Another run holds the lock: fine (exit 0) unless it has held it far longer than
        any run may take, which means it is stuck: say so, with a failing status."""
        holder = lock.holder()
        stale_s = 2 * self.cfg.run_time_budget_seconds
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
        todo: deque[Turn] = deque(turns)
        guard = threading.Lock()
        stop = threading.Event()
        outcome: dict[str, Any] = {"rc": 0, "error": None}
        started = time.monotonic()

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
                        lane = Lane(self)
                        with guard:
                            self.lanes.append(lane)
                    lane.jc.next_ticket = ticket
                    rc, fatal, alone = self._serve(turn, lane)
                    with guard:
                        outcome["rc"] = max(outcome["rc"], rc)
                        todo.extendleft(reversed(alone))  # served alone next, this run
                    if fatal:
                        stop.set()
            except BaseException as exc:  # handed to the main thread
                with guard:
                    outcome["error"] = outcome["error"] or exc
                stop.set()

        count = max(1, min(self.cfg.parallel_orgs, len(turns)))
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
        if outcome["error"] is not None:
            raise outcome["error"]
        left = sum(len(_orgs_of(turn)) for turn in todo) + self.unserved
        if left and not stop.is_set():
            self.log.info(
                "run time budget reached; remaining orgs wait for the next run", orgs_left=left
            )
        self.log.info(
            "run finished",
            orgs_served=len(self.recorder.finished),
            orgs_left=left,
            shared_queries=len(self.shared_turns),
            orgs_in_shared_queries=sum(self.shared_turns),
            jumpcloud_requests=self.limiter.requests,
            duration_s=round(time.monotonic() - started, 3),
        )
        return outcome["rc"]

    def _begin(self, org: str, lane: Lane) -> OrgRun | None:
        """An org's turn begins: its state (read again when it already had a turn this run),
        its run record; None (logged) when its state file is unusable."""
        if org in self._turned:
            self.store.forget(org)
        try:
            state = self.store.org(org)
        except StateError as exc:
            self.log.error(f"state file unusable: {exc}", org=org)
            return None
        self._turned.add(org)
        # no cursor and no floor yet (a failed first run leaves only its run record)
        fresh = state.cursor_ms is None and state.floor_ms is None
        orun = OrgRun(org, state, lane)
        state.served_ms = now_ms()  # saved with the org's first accepted batch
        if fresh and self.cfg.legacy_end_time_ms is not None:
            state.floor_ms = self.cfg.legacy_end_time_ms
            self.log.info(
                "seeding from the legacy state.end_time",
                org=org,
                floor=format_ms(state.floor_ms),
            )
        self.recorder.begin(orun)
        return orun

    def _serve(self, turn: Turn, lane: Lane) -> tuple[int, bool, list[str]]:
        """One turn, an org alone or a shared query: (exit code, whether the whole run must
        stop, orgs to serve alone next in this run)."""
        runs = []
        rc = 0
        for org in _orgs_of(turn):
            orun = self._begin(org, lane)
            if orun is None:
                rc = 1
            else:
                runs.append(orun)
        if not runs:
            return rc, False, []
        jc, sink = lane.jc, lane.sink
        stream = SharedStream(self, runs, lane) if len(runs) > 1 else None
        label = scope_name(tuple(o.org for o in runs))
        retries_before = lane.retries()
        resent_before = sink.resent
        stop = False
        try:
            if stream is None:
                self._run_org(runs[0], jc, sink)
            else:
                stream.run()
        except WaitPastBudget:
            if not any(o.fetched or o.batches or o.skipped for o in runs):
                # the rate cap left it no request before the budget ended: not its turn, so
                # it keeps its place (least recently served) for the next run
                self._turn_not_counted(runs)
                with self._unserved_lock:
                    self.unserved += len(runs)
                return rc, False, []
            self._budget_cut(runs, label)
        except BudgetReached:
            self._budget_cut(runs, label)
        except BudgetExceeded as exc:
            # an exchange was cut at the budget: fine once progress is saved, loud when
            # a stalled peer kept this run from shipping anything
            if any(o.batches for o in runs):
                self._ended(runs, "budget")
                self.log.warning(f"{exc}; progress saved, next run resumes", org=label)
            else:
                self._ended(runs, "failed", exc)
                self.log.error(f"{exc}; nothing shipped this run", org=label)
                rc = 1
        except OrgRefused as exc:
            if stream is None:
                self._ended(runs, "failed", exc)
                self.log.error(str(exc), org=label)
                rc = 1
            else:
                return rc, False, self._refused(runs, exc)
        except (FatalError, GaveUpError) as exc:
            self._ended(runs, "failed", exc)
            self.log.error(str(exc), org=label)
            rc = 1
        except StateWriteError as exc:
            # every later batch (and org) would be delivered and not recorded either
            self._ended(runs, "failed", exc)
            self.log.error(str(exc), org=label)
            rc = 1
            stop = True
        if rc == 0 and any(o.status == "failed" for o in runs):
            rc = 1  # a member of a shared query failed alone (_member_failed)
        alone = []
        if stream is not None:
            with self._unserved_lock:
                self.shared_turns.append(len(runs))
            if not stop:
                alone = self._unroutable(stream, runs)
        retries = lane.retries() - retries_before
        resent = sink.resent - resent_before
        self._check_skew(jc)
        for o in runs:
            o.retries, o.resent = retries, resent
            self._summary(o)
            self.recorder.finish(o)
            self.store.release(o.org)
        return rc, stop, alone

    def _refused(self, runs: list[OrgRun], exc: OrgRefused) -> list[str]:
        """JumpCloud refused a shared query (402/403), which does not say for which member:
        the turn does not count for any of them (no run record, their place kept), and each
        is served alone next, in this run, so that only the refused org fails."""
        self._turn_not_counted(runs)
        for o in runs:
            self.store.release(o.org)
        with self._unserved_lock:
            self.shared_turns.append(len(runs))
        self.log.warning(
            f"{exc}; the query's orgs are served alone next, so that only the refused one fails",
            orgs=",".join(o.org for o in runs),
        )
        return [o.org for o in runs]

    def _turn_not_counted(self, runs: list[OrgRun], keep_record: bool = False) -> None:
        """These orgs keep their place (least recently served first) for the next turn; without
        ``keep_record`` their turn leaves no run record either."""
        for o in runs:
            o.state.served_ms = o.served_before
            if not keep_record:
                o.state.ops_live = None

    def _member_failed(self, o: OrgRun, exc: BaseException) -> None:
        """One member of a shared query cannot be served (its turn ends failed, as a solo
        turn would); the query goes on for the others."""
        self._ended([o], "failed", exc)
        self.log.error(str(exc), org=o.org)

    def _ended(self, runs: list[OrgRun], status: str, error: BaseException | None = None) -> None:
        for o in runs:
            o.status, o.error = status, error

    def _budget_cut(self, runs: list[OrgRun], label: str) -> None:
        for o in runs:
            o.status = "budget"
        self._turn_not_counted([o for o in runs if not o.batches], keep_record=True)
        self.log.info(
            "run time budget reached; progress saved, next run resumes",
            org=label,
            budget_s=self.cfg.run_time_budget_seconds,
        )

    def _unroutable(self, stream: SharedStream, runs: list[OrgRun]) -> list[str]:
        """After a shared query that met an event it could not route: its members are served
        alone from now on (persisted: until their windows start after that event), first
        this run if the budget allows; they keep their place meanwhile."""
        event = stream.unroutable
        if event is None:
            return []
        until = self._bound(runs[0])
        if event.ts_ms is not None:
            until = max(until, event.ts_ms)
        for o in runs:
            o.state.solo_until_ms = until
        self._turn_not_counted(runs, keep_record=True)
        what = (
            "an element that is no event (its org cannot be read)"
            if event.reason == UNPARSABLE
            else "an event without the organization of one of its orgs"
        )
        self.log.warning(
            f"a shared query returned {what}; nothing was guessed: its orgs are served alone "
            "(events before it are shipped, the rest is read again by each org's own stream)",
            orgs=",".join(o.org for o in runs),
            id=event.key,
            organization=event.reason,
        )
        return [o.org for o in runs]

    def _check_skew(self, jc: JumpCloudClient) -> None:
        """Warn once per run when the host clock and JumpCloud's (its Date header) differ.
        Correctness does not depend on it (windows and cursor follow JumpCloud's times)."""
        if self._skew_warned or jc.server_clock is None:
            return
        server, host = jc.server_clock
        skew = server - host  # the Date header is rounded down to the second
        if abs(skew) > SKEW_WARN_MS:
            self._skew_warned = True
            self.log.warning(
                "the host clock differs from JumpCloud's (HTTP Date header); di2siem follows "
                "JumpCloud's times, but fix the host's time synchronisation (NTP)",
                host_clock=("behind" if skew > 0 else "ahead"),
                skew_s=round(abs(skew) / 1000),
            )

    def _serving_order(self) -> list[Turn]:
        """The run's turns: least recently served org first (never served: first of all, in
        config order), so that a long backfill of one org, cut by the run time budget, cannot
        starve the others: orgs that use up the budget take turns. Caught-up orgs share
        queries (grouping.py); a group takes the place of its least recently served member."""
        orgs = list(self.cfg.org_keys)
        metas = {org: self.store.meta(org) for org in orgs}
        served = {org: parse_ms_or_none((metas[org] or {}).get("served")) for org in orgs}
        order = sorted(orgs, key=lambda org: served.get(org) or -1)
        return plan_turns(
            order, metas, self.overlap_ms, self.cfg.jumpcloud.shared_query_max_orgs, now_ms()
        )

    def _summary(self, o: OrgRun) -> None:
        cursor = format_ms(o.state.cursor_ms) if o.state.cursor_ms is not None else "none"
        fields = {
            "org": o.org,
            "fetched": o.fetched,
            "shipped": o.shipped,
            "duplicates": o.duplicates,
            "skipped": o.skipped,
            "batches": o.batches,
            "retries": o.retries,
            "resent": o.resent,
            "duration_s": round(time.monotonic() - o.started, 3),
            "cursor": cursor,
        }
        if o.deep:
            fields["deep"] = o.deep
        if o.untimed:
            fields["untimed"] = o.untimed
        if o.dead_lettered:
            fields["dead_lettered"] = o.dead_lettered
        peak = peak_rss_mb()
        if peak is not None:
            fields["peak_rss_mb"] = peak
        fields["status"] = o.status
        if o.status == "failed":
            self.log.error("run summary", **fields)
        else:
            self.log.info("run summary", **fields)

    # -- one org -----------------------------------------------------------------------------
    def _digest(self, o: OrgRun, start: int, alone_max: int) -> Callable[..., object]:
        """Per event, while the page is parsed (fetch thread): its shaped ``Item``, ready to
        batch. Exceptions: ``SKIPPED`` (before the window), an ``Oversize`` for an event whose
        text alone is over the byte cap (measured without shaping it: no copies of a huge
        event) and ``(item, deep)`` for events that need a warning once they are known not to
        be duplicates (no readable time, or nested deeper than json_depth).

        Events that can be spliced from the page text are never re-serialised; the rest
        (and only they) are. No per-event dict or text outlives the parse.
        """
        shaper = o.lane.shaper
        src = shaper.src
        fast_bytes = shaper.fast_bytes
        shape = shaper.shape
        size_floor = shaper.size_floor
        depth_limit = self.cfg.jumpcloud.json_depth
        # the event object itself accounts for one bracket
        bracket_bound = depth_limit + 1
        new_item = tuple.__new__
        nonstandard = NONSTANDARD
        seen_nonstandard = [nonstandard[0]]

        def digest(event: dict, text: str, s: int, e: int, index: int) -> object:
            if index == 0:
                shaper.begin_page(event, text[s:e])
            event_id = event.get("id")
            if type(event_id) is not str or not event_id:
                event_id = event_key(event_id, text[s:e])
            raw_ts = event.get(src)
            ts = None
            if type(raw_ts) is str:
                try:
                    ts = parse_ms(raw_ts)
                except ValueError:
                    pass
                else:
                    if ts < start:
                        return SKIPPED  # before the window
                    if ts > MAX_MS:
                        ts = None  # past 9999-12-31: not a time the state can hold
            if e - s > alone_max:
                nbytes = size_floor(event)
                if nbytes > alone_max:
                    return Oversize(nbytes, event_id, ts)
            # cheap bound first: fewer brackets than the limit means it cannot be too deep
            deep = text.count("{", s, e) + text.count("[", s, e) > bracket_bound and too_deep(
                event, depth_limit
            )
            if nonstandard[0] != seen_nonstandard[0]:
                # NaN/Infinity or an over-long integer in this event: its text is not JSON a
                # SIEM takes as is, so it is re-serialised (see shaping.encode_json)
                seen_nonstandard[0] = nonstandard[0]
                data = None
            else:
                data = fast_bytes(event, text[s:e], ts) if shaper.fast else None
            if data is None:
                data = shape(event, None, ts)
            item = new_item(Item, (data, event_id, ts))
            if ts is None or deep:
                return (item, deep)
            return item

        return digest

    def _flagged(self, o: OrgRun, item: Item, deep: bool) -> None:
        """Warnings for a new (not duplicate) event that has no readable time or is deep."""
        if item.ts_ms is None:
            o.untimed += 1
            self._detail_warning(
                "event without a readable time; shipped, remembered, the cursor does not move",
                id=item.event_id,
            )
        if deep:
            o.deep += 1
            self._detail_warning(
                "event nested deeper than jumpcloud.json_depth; shipped whole",
                id=item.event_id,
                json_depth=self.cfg.jumpcloud.json_depth,
            )

    def _window(self, o: OrgRun, jc: JumpCloudClient) -> tuple[int, bool]:
        """(start of the org's window this turn, whether it is its first), on JumpCloud's
        clock (probed once per lane when the window is recent)."""
        cfg = self.cfg
        state = o.state
        start = state.start_ms(self.overlap_ms)
        first = start is None
        host_now = now_ms()
        if first:
            start = host_now + int(cfg.jumpcloud.initial_days_back * DAY_MS)
        if jc.server_clock is None and start > host_now - PROBE_MARGIN_MS:
            # a window starting near or after the host's now: ask JumpCloud's time (the Date
            # of a one-event query), since a host clock ahead of it would ask for the future
            # and one behind it would re-read (and re-send) what is already shipped
            jc.probe(format_ms(host_now - DAY_MS), o.org)
        now = jc.server_now_ms() or now_ms()
        if first and jc.server_clock is not None:
            start = now + int(cfg.jumpcloud.initial_days_back * DAY_MS)
        self._refuse_ahead(o, now)
        start = min(start, now)  # never ask for the future (JumpCloud's, not ours)
        return start, first

    def _refuse_ahead(self, o: OrgRun, now: int) -> None:
        """PositionAhead when the org's cursor or floor lies ahead of JumpCloud's now (left by
        an older version, a migrated state, a hand-edited file): never pulled back to now,
        which would skip everything between the org's real position and now."""
        state = o.state
        for key, ms in (("cursor", state.cursor_ms), ("floor", state.floor_ms)):
            if ms is not None and ms > now + AHEAD_TOLERANCE_MS:
                raise PositionAhead(
                    f"state of org {o.org}: {key} {format_ms(ms)} is ahead of JumpCloud's "
                    f"clock ({format_ms(now)}); nothing read, since going on from now would "
                    "skip the events since the org's real position. Fix: di2siem state export "
                    f"--org {o.org}, set cursor and floor to the last time really shipped, "
                    "di2siem state import --force that file (or delete "
                    f"{self.store.path_of(o.org)} to start the org over from initial_days_back)"
                )

    def _run_org(self, o: OrgRun, jc: JumpCloudClient, sink: Sink) -> None:
        cfg = self.cfg
        state = o.state
        start, first = self._window(o, jc)
        self.log.debug("polling", org=o.org, start_time=format_ms(start))

        batcher = Batcher(cfg.siem.batch_size, cfg.siem.max_batch_bytes, sink.framing)
        add = batcher.add
        # the largest event that fits in a batch alone (see Batcher.fits_alone)
        alone_max = batcher.max_bytes - batcher.overhead
        # the key -> ms dict behind state.recent; the sender adds to it once a batch is
        # accepted, and only then drops the batch's keys from o.pending (so a key is always
        # in one of them: test pending first)
        shipped = state.recent.times
        pending_ids = o.pending
        pending_add = pending_ids.add
        # JumpCloud pages are fetched, parsed and shaped one page ahead, batches are posted
        # (and recorded) by a sender thread: network waits overlap with our own work.
        pages = Prefetcher(
            jc.pages(format_ms(start), o.org, self._digest(o, start, alone_max), Defect)
        )
        sender = Sender(sink, lambda acc: self._accepted(o, acc), lambda i: self._oversize(o, i))
        try:
            for _text, page in pages:
                _text = None  # the items own their bytes; the page text is not needed
                o.fetched += len(page)
                for item in page:
                    if type(item) is not Item:
                        if item is SKIPPED:
                            o.duplicates += 1
                            continue
                        if type(item) is Oversize:
                            if item[1] in pending_ids or item[1] in shipped:
                                o.duplicates += 1
                            else:
                                pending_add(item[1])
                                sender.submit(SKIP, item)
                            continue
                        if type(item) is Defect:
                            self._dead_letter(o, item)
                            continue
                        item, deep = item
                        key = item[1]
                        if key in pending_ids or key in shipped:
                            o.duplicates += 1
                            continue
                        self._flagged(o, item, deep)
                    else:
                        key = item[1]
                        if key in pending_ids or key in shipped:
                            o.duplicates += 1
                            continue
                    pending_add(key)
                    if len(item[0]) > alone_max:
                        sender.submit(SKIP, Oversize(len(item[0]), key, item[2]))
                        continue
                    full = add(item)
                    if full is not None:
                        sender.submit(BATCH, full)
                        if self.clock() >= self.deadline:
                            raise BudgetReached()
                page = None  # release this page before the next one is taken
                if self.clock() >= self.deadline:
                    raise BudgetReached()  # also when pages hold nothing new to ship
            if batcher.pending():
                sender.submit(BATCH, batcher.take())
            sender.finish()
        except BaseException:
            pages.stop()
            sender.finish()  # what was handed over is shipped (or the sender's error wins)
            raise
        if first and state.cursor_ms is None and state.floor_ms is None:
            # pin the first window so later runs do not slide past late events
            state.floor_ms = start - 1
            self.store.save(o.org)

    def _dead_letter(self, o: OrgRun, defect: Defect) -> None:
        """An element that can never be shipped as an event: its exact bytes are kept in
        state_dir/dead-letter (once: a re-read finds the file and counts a duplicate), the
        stream goes on past it, and the org's totals and status say so."""
        try:
            path, new = self.dead_letters.keep(o.org, defect.text)
        except OSError as exc:
            raise StateWriteError(
                f"cannot keep an unparsable JumpCloud event in {self.dead_letters.directory} "
                f"({exc.strerror or exc}); it is not skipped unkept, so the org stops here"
            ) from None
        if not new:
            o.duplicates += 1
            return
        o.dead_lettered += 1
        self.log.warning(
            f"JumpCloud sent an element that is no event ({defect.reason}); not shipped, "
            "kept as received in the dead-letter file, the stream goes on past it",
            org=o.org,
            file=path,
        )

    def _oversize(self, o: OrgRun, item: Oversize) -> None:
        """An event that alone exceeds siem.max_batch_bytes (measured here): reported,
        remembered as handled, never posted."""
        o.skipped += 1
        self.log.warning(
            "event larger than siem.max_batch_bytes; skipped",
            org=o.org,
            id=item.event_id,
            bytes=item.nbytes,
            max_batch_bytes=self.cfg.siem.max_batch_bytes,
        )
        self._record(o, [item])
        o.pending.discard(item[1])

    def _accepted(self, o: OrgRun, items: list[Item]) -> None:
        o.shipped += len(items)
        o.batches += 1
        self._record(o, items)
        o.pending.difference_update([item[1] for item in items])

    def _bound(self, o: OrgRun) -> int:
        """The latest time the org's fetch has covered: JumpCloud's clock at its lane's last
        answer (the host's when its answers carry no Date header)."""
        jc = o.lane.jc
        if jc.server_clock is not None:
            return jc.server_clock[0]
        return now_ms()

    def _record(self, o: OrgRun, items: list[Item]) -> None:
        """Remember the items' keys and move the cursor to their newest time within the
        covered bound; items stamped past it are remembered under their own time, untimed
        ones at the bound, and neither moves the cursor."""
        state = o.state
        bound = self._bound(o)
        stamps = [item[2] for item in items]
        if None in stamps:
            stamps = [t for t in stamps if t is not None]
            pairs = [(item[1], bound if item[2] is None else item[2]) for item in items]
        else:
            pairs = [(item[1], item[2]) for item in items]
        newest = state.cursor_ms
        if stamps:
            latest = max(stamps)
            if latest > bound:  # future-stamped: remembered under its time, moves nothing
                latest = max((t for t in stamps if t <= bound), default=None)
            if latest is not None and (newest is None or latest > newest):
                newest = latest
        state.cursor_ms = newest
        recent = state.recent
        recent.add(pairs)
        if newest is not None:
            recent.prune(newest - self.overlap_ms)
            floor = recent.cap(self.cfg.recent_ids_max, newest)
            if floor is not None and (state.floor_ms is None or floor > state.floor_ms):
                state.floor_ms = floor
        self.store.save(o.org)


def run(cfg: Config, log: Logger) -> int:
    return Pipeline(cfg, log).run()


__all__ = ["DEFAULT_ORG", "Pipeline", "run"]
