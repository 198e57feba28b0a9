"""One poll-and-ship cycle: for each org, stream pages, drop duplicates, batch, ship, save.

Invariants:
- the cursor (and the ids it covers) are saved only after the SIEM accepted a batch, one
  batch at a time, so a failure or kill -9 at any instant re-sends at most the batch in flight;
- every run re-reads ``overlap_seconds`` behind the cursor and drops already-shipped ids;
- memory holds at most two pages (one processed, the next fetched), two batches (one posted,
  one queued) and the bounded recent-id memory, whatever the backlog.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import Callable

from .batching import Batcher, Item
from .config import DEFAULT_ORG, Config, ConfigError
from .http import BudgetExceeded, FatalError, GaveUpError, RetryPolicy
from .jumpcloud import JumpCloudClient
from .lock import InstanceLock, LockHeld
from .log import Logger
from .shaping import Shaper, too_deep
from .sink import Sink
from .state import OrgState, StateError, StateStore
from .timeutil import format_ms, now_ms, parse_ms

DAY_MS = 86_400_000
MAX_DETAIL_WARNINGS = 10


class BudgetReached(Exception):
    pass


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


class OrgRun:
    """Counters and the shipping bookkeeping of one org within one run."""

    def __init__(self, org: str, state: OrgState) -> None:
        self.org = org
        self.state = state
        self.fetched = 0
        self.shipped = 0
        self.duplicates = 0
        self.skipped = 0
        self.deep = 0
        self.batches = 0
        self.retries = 0
        self.started = time.monotonic()
        self.status = "ok"
        # ids of events we skipped (oversize) or could not time; recorded with the next save
        self.carry: list[tuple[str, int]] = []


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

    def __init__(self, pipeline: Pipeline, o: OrgRun, sink: Sink) -> None:
        self.pipeline = pipeline
        self.o = o
        self.sink = sink
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="di2siem-send", daemon=True)
        self.thread.start()
        self.finished = False

    def _work(self) -> None:
        p, o = self.pipeline, self.o
        while True:
            kind, payload = self.queue.get()
            if kind is _END:
                return
            if self.error is not None:
                continue  # drain without shipping after a failure
            try:
                if kind == SKIP:
                    p._oversize(o, payload)
                else:
                    self.sink.ship(
                        payload, lambda acc: p._accepted(o, acc), lambda it: p._oversize(o, it)
                    )
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
        # one policy per side: each is used by one thread only (fetcher / sender)
        self.jc_policy, self.sink_policy = (
            RetryPolicy(
                cfg.max_retries,
                cfg.retry_base_delay_seconds,
                cfg.retry_max_delay_seconds,
                sleep,
                deadline=self.deadline,
                clock=clock,
            )
            for _ in range(2)
        )
        self.store = StateStore(cfg.state_dir)
        self.shaper = Shaper(cfg)
        self.overlap_ms = int(cfg.jumpcloud.overlap_seconds * 1000)
        self._warnings = 0

    # -- helpers -----------------------------------------------------------------------------
    def _retries(self) -> int:
        return self.jc_policy.retries + self.sink_policy.retries

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
            self.log.info("another run holds the lock; exiting", lock=lock.path)
            return 0
        try:
            try:
                self.store.load()
            except StateError as exc:
                self.log.error(f"state file unusable: {exc}")
                return 1
            jc = JumpCloudClient(
                self.cfg.jumpcloud, self.jc_policy, self._on_retry, self.log.add_secret
            )
            sink = Sink(self.cfg.siem, self.sink_policy, self._on_retry, self.sleep)
            try:
                return self._run_orgs(jc, sink)
            finally:
                jc.close()
                sink.close()
                self.store.close()
        finally:
            lock.release()

    def _run_orgs(self, jc: JumpCloudClient, sink: Sink) -> int:
        rc = 0
        orgs = self._serving_order()
        for index, org in enumerate(orgs):
            if self.clock() >= self.deadline:
                self.log.info(
                    "run time budget reached; remaining orgs wait for the next run",
                    orgs_left=len(orgs) - index,
                )
                break
            fresh = not self.store.has(org)
            state = self.store.org(org)
            state.served_ms = now_ms()  # saved with the org's first accepted batch
            if fresh and self.cfg.legacy_end_time_ms is not None:
                state.floor_ms = self.cfg.legacy_end_time_ms
                self.log.info(
                    "seeding from the legacy state.end_time",
                    org=org,
                    floor=format_ms(state.floor_ms),
                )
            orun = OrgRun(org, state)
            retries_before = self._retries()
            try:
                self._run_org(orun, jc, sink)
            except BudgetReached:
                orun.status = "budget"
                self.log.info(
                    "run time budget reached; progress saved, next run resumes",
                    org=org,
                    budget_s=self.cfg.run_time_budget_seconds,
                )
            except BudgetExceeded as exc:
                # an exchange was cut at the budget: fine once progress is saved, loud when
                # a stalled peer kept this run from shipping anything
                if orun.batches:
                    orun.status = "budget"
                    self.log.warning(f"{exc}; progress saved, next run resumes", org=org)
                else:
                    orun.status = "failed"
                    self.log.error(f"{exc}; nothing shipped this run", org=org)
                    rc = 1
            except (FatalError, GaveUpError) as exc:
                orun.status = "failed"
                self.log.error(str(exc), org=org)
                rc = 1
            except OSError as exc:
                orun.status = "failed"
                self.log.error(f"state write failed: {exc}", org=org)
                rc = 1
            orun.retries = self._retries() - retries_before
            self._summary(orun)
        return rc

    def _serving_order(self) -> list[str]:
        """Least recently served org first (never served: first of all, in config order), so
        that a long backfill of one org, cut by the run time budget, cannot starve the others:
        orgs that use up the budget take turns."""
        orgs = list(self.cfg.org_keys)
        served = {org: self.store.orgs[org].served_ms for org in orgs if self.store.has(org)}
        return sorted(orgs, key=lambda org: served.get(org) or -1)

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
            "duration_s": round(time.monotonic() - o.started, 3),
            "cursor": cursor,
        }
        if o.deep:
            fields["deep"] = o.deep
        peak = peak_rss_mb()
        if peak is not None:
            fields["peak_rss_mb"] = peak
        fields["status"] = o.status
        if o.status == "failed":
            self.log.error("run summary", **fields)
        else:
            self.log.info("run summary", **fields)

    # -- one org -----------------------------------------------------------------------------
    def _digest(self, o: OrgRun, start: int) -> Callable[..., object]:
        """Per event, while the page is parsed (fetch thread): its shaped ``Item``, ready to
        batch. Exceptions: ``SKIPPED`` (before the window) and ``(item, deep)`` for events
        that need a warning once they are known not to be duplicates (no readable time, or
        nested deeper than json_depth).

        Events that can be spliced from the page text are never re-serialised; the rest
        (and only they) are. No per-event dict or text outlives the parse.
        """
        shaper = self.shaper
        src = shaper.src
        fast_bytes = shaper.fast_bytes
        shape = shaper.shape
        depth_limit = self.cfg.jumpcloud.json_depth
        # the event object itself accounts for one bracket
        bracket_bound = depth_limit + 1
        new_item = tuple.__new__

        def digest(event: dict, text: str, s: int, e: int, index: int) -> object:
            if index == 0:
                shaper.begin_page(event, text[s:e])
            event_id = event.get("id")
            if event_id is not None and type(event_id) is not str:
                event_id = str(event_id)
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
            # cheap bound first: fewer brackets than the limit means it cannot be too deep
            deep = text.count("{", s, e) + text.count("[", s, e) > bracket_bound and too_deep(
                event, depth_limit
            )
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
            self._detail_warning("event without a readable time", id=item.event_id)
        if deep:
            o.deep += 1
            self._detail_warning(
                "event nested deeper than jumpcloud.json_depth; shipped whole",
                id=item.event_id,
                json_depth=self.cfg.jumpcloud.json_depth,
            )

    def _run_org(self, o: OrgRun, jc: JumpCloudClient, sink: Sink) -> None:
        cfg = self.cfg
        state = o.state
        now = now_ms()
        start = state.start_ms(self.overlap_ms)
        first = start is None
        if start is None:
            start = now + int(cfg.jumpcloud.initial_days_back * DAY_MS)
        start = min(start, now)  # never ask for the future
        self.log.debug("polling", org=o.org, start_time=format_ms(start))

        batcher = Batcher(cfg.siem.batch_size, cfg.siem.max_batch_bytes, sink.framing)
        add = batcher.add
        # the largest event that fits in a batch alone (see Batcher.fits_alone)
        alone_max = batcher.max_bytes - batcher.overhead
        # the id -> ms dict behind state.recent; the sender adds to it once a batch is accepted
        shipped = state.recent.times
        pending_ids: set[str] = set()
        pending_add = pending_ids.add
        pending_cap = 4 * cfg.siem.batch_size
        # JumpCloud pages are fetched, parsed and shaped one page ahead, batches are posted
        # (and recorded) by a sender thread: network waits overlap with our own work.
        pages = Prefetcher(jc.pages(format_ms(start), o.org, self._digest(o, start)))
        sender = Sender(self, o, sink)
        try:
            for _text, page in pages:
                _text = None  # the items own their bytes; the page text is not needed
                o.fetched += len(page)
                for item in page:
                    if type(item) is not Item:
                        if item is SKIPPED:
                            o.duplicates += 1
                            continue
                        item, deep = item
                        event_id = item[1]
                        if event_id in shipped or event_id in pending_ids:
                            o.duplicates += 1
                            continue
                        self._flagged(o, item, deep)
                    else:
                        event_id = item[1]
                        # None is never in either set (ids are recorded only when present)
                        if event_id in shipped or event_id in pending_ids:
                            o.duplicates += 1
                            continue
                    if len(item[0]) > alone_max:
                        sender.submit(SKIP, item)
                        continue
                    if event_id is not None:
                        pending_add(event_id)
                    full = add(item)
                    if full is not None:
                        sender.submit(BATCH, full)
                        if len(pending_ids) > pending_cap:
                            # ids of batches already handed over are in recent by now or
                            # will be before the next page: keep this set small
                            pending_ids.intersection_update([i[1] for i in batcher.items])
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
        if o.carry:
            self._record(o, [])
        if first and state.cursor_ms is None and state.floor_ms is None:
            # pin the first window so later runs do not slide past late events
            state.floor_ms = start - 1
            self.store.save()

    def _oversize(self, o: OrgRun, item: Item) -> None:
        o.skipped += 1
        self.log.warning(
            "event larger than siem.max_batch_bytes (or refused by the SIEM as too large); skipped",
            org=o.org,
            id=item.event_id,
            bytes=len(item.data),
            max_batch_bytes=self.cfg.siem.max_batch_bytes,
        )
        if item.event_id is not None:
            o.carry.append((item.event_id, item.ts_ms if item.ts_ms is not None else now_ms()))

    def _accepted(self, o: OrgRun, items: list[Item]) -> None:
        o.shipped += len(items)
        o.batches += 1
        self._record(o, items)

    def _record(self, o: OrgRun, items: list[Item]) -> None:
        state = o.state
        pairs: list[tuple[str, int]] = []
        newest = state.cursor_ms
        fallback = None
        stamps = [item[2] for item in items]
        timed = None not in stamps
        if stamps:
            latest = (
                max(stamps) if timed else max((t for t in stamps if t is not None), default=None)
            )
            if latest is not None and (newest is None or latest > newest):
                newest = latest
        if o.carry:
            for _, ts in o.carry:
                if newest is None or ts > newest:
                    newest = ts
        if timed:
            pairs = [(item[1], item[2]) for item in items if item[1] is not None]
        else:
            for item in items:
                if item.event_id is None:
                    continue
                ts = item.ts_ms
                if ts is None:
                    if fallback is None:
                        fallback = newest if newest is not None else now_ms()
                    ts = fallback
                pairs.append((item.event_id, ts))
        if o.carry:
            pairs.extend(o.carry)
            o.carry = []
        state.cursor_ms = newest
        recent = state.recent
        recent.add(pairs)
        if newest is not None:
            recent.prune(newest - self.overlap_ms)
            floor = recent.cap(self.cfg.recent_ids_max, newest)
            if floor is not None and (state.floor_ms is None or floor > state.floor_ms):
                state.floor_ms = floor
        self.store.save()


def run(cfg: Config, log: Logger) -> int:
    return Pipeline(cfg, log).run()


__all__ = ["DEFAULT_ORG", "Pipeline", "run"]
