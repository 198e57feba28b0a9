"""``di2siem backfill``: ship every event of a past window [since, until) again, for some orgs
(default: all the config's) and services, to the configured intake.

A backfill is a job of its own, in ``state_dir/backfill/<key>/``: its record ``job.json``
(orgs, services, the window, which orgs are done) and a state per org (cursor and recent ids,
the live state's format) that moves as batches are accepted, so a kill -9 or a failure is
resumed by the same command (at most the batch in flight again) and a finished job ships
nothing. The key is the orgs, the services and the window as typed: a relative time
(``-7d``) or the default ``until`` (now) is fixed when the job starts and kept in job.json.
The live state (cursors, recent ids, run records) is never read for writing nor written: a
``di2siem run`` afterwards behaves as if the backfill never happened.

It takes the run lock, so a backfill and the scheduled job never ship at the same moment: it
waits (saying so) for a run in progress, and the scheduled runs meanwhile leave the state to
it (they say so, and the first one after it resumes from the cursor). So one request-rate cap
holds for both. ``--dry-run`` writes nothing at all (no state, no job, not even the lock
file): it counts the window's events per org (and per service when asked) with JumpCloud's
/events/count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..config.jumpcloud import SERVICE_NAME
from ..engine.context import OrgRun, StreamContext
from ..engine.overlap import FAST
from ..errors import FatalError, GaveUpError, LockHeld, OrgRefused, StateError, StateWriteError
from ..log import Logger
from ..scheduler.lanes import Lane
from ..scheduler.progress import Progress
from ..scheduler.run import prepare_state_dir
from ..source.tokens import TokenHolder
from ..state.atomicfile import replace_file
from ..state.deadletter import DeadLetters
from ..state.lock import InstanceLock
from ..state.store import StateStore
from ..throttle import RateLimiter
from ..timeutil import format_ms, now_ms, parse_ms

DAY_MS = 86_400_000
UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)([smhdw])")
ZONED = re.compile(r".*(Z|z|[+-]\d\d:\d\d)")
RETENTION_DAYS = 90  # JumpCloud's; some plans reportedly keep 15
SHORT_RETENTION_DAYS = 15
JOB_FILE = "job.json"
FAILURES = (FatalError, GaveUpError, OrgRefused, StateError, StateWriteError)


class UsageError(Exception):
    """Bad input: one line, exit 2, nothing written."""


@dataclass(frozen=True)
class Job:
    orgs: tuple[str, ...]
    services: tuple[str, ...]
    since_ms: int
    until_ms: int
    key: str
    typed: dict[str, str]

    def window(self) -> str:
        return f"[{format_ms(self.since_ms)}, {format_ms(self.until_ms)})"


def parse_time(text: str, option: str, now: int) -> tuple[int, bool]:
    """(epoch ms, whether relative) of RFC 3339 with a zone, or -7d / -36h / -90m / -30s."""
    relative = RELATIVE.fullmatch(text.strip())
    if relative:
        return now - int(float(relative[1]) * UNIT_MS[relative[2]]), True
    try:
        if not ZONED.fullmatch(text.strip()):
            raise ValueError(text)
        return parse_ms(text.strip()), False
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a time: give RFC 3339 with its zone "
            "(2026-11-01T00:00:00Z) or a time back from now (-7d, -36h, -90m)"
        ) from None


def plan(
    cfg: Config,
    since: str,
    until: str | None,
    orgs: list[str] | None,
    services: list[str] | None,
) -> Job:
    """The job the command names, or UsageError naming what is wrong."""
    now = now_ms()
    since_ms, since_relative = parse_time(since, "--since", now)
    until_ms, until_relative = parse_time(until, "--until", now) if until else (now, True)
    if until_ms > now + 1000:
        raise UsageError(f"--until {until} is in the future: events after now do not exist yet")
    if since_ms >= until_ms:
        raise UsageError(
            f"--since {since} ({format_ms(since_ms)}) must be before --until "
            f"{until or 'now'} ({format_ms(until_ms)})"
        )
    chosen = tuple(dict.fromkeys(orgs or cfg.org_keys))
    for org in chosen:
        if org not in cfg.org_keys:
            raise UsageError(
                f"--org {org} is not one of the config's orgs ({', '.join(cfg.org_keys)})"
            )
    names = tuple(dict.fromkeys(services or cfg.jumpcloud.services))
    for name in names:
        if not SERVICE_NAME.fullmatch(name):
            raise UsageError(f"--service {name!r} is not a service name (lower-case, e.g. sso)")
    typed = {
        "since": since if since_relative else format_ms(since_ms),
        "until": (until or "now") if until_relative else format_ms(until_ms),
    }
    identity = {"orgs": sorted(chosen), "services": sorted(names), **typed}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return Job(chosen, names, since_ms, until_ms, key, typed)


def retention_warnings(job: Job, now: int) -> list[str]:
    """What JumpCloud no longer holds: before its 90-day retention (15 on some plans)."""
    lines = []
    for days, which in ((RETENTION_DAYS, "JumpCloud's"), (SHORT_RETENTION_DAYS, "some plans'")):
        edge = now - days * DAY_MS
        if job.since_ms < edge:
            gone = f"[{format_ms(job.since_ms)}, {format_ms(min(edge, job.until_ms))})"
            lines.append(
                f"the window reaches past {which} {days}-day retention: events in {gone} "
                "cannot be fetched (JumpCloud returns only what it still holds)"
            )
            break
    return lines


def dry_run(cfg: Config, log: Logger, job: Job, per_service: bool) -> int:
    """Print how many events the window holds per org (and per service); write nothing."""
    from ..source.client import JumpCloudClient
    from ..transport.retry import RetryPolicy

    policy = RetryPolicy(cfg.max_retries, cfg.retry_base_delay_seconds, cfg.retry_max_delay_seconds)
    limiter = RateLimiter(cfg.jumpcloud.max_requests_per_second)
    jc = JumpCloudClient(cfg.jumpcloud, policy, secrets=log, limiter=limiter)
    start, end = format_ms(job.since_ms), format_ms(job.until_ms)
    total = 0
    try:
        for org in job.orgs:
            count = jc.count(start, org, end, job.services)
            total += count
            _say(f"org={org} events={count}")
            if per_service:
                for service in job.services:
                    events = jc.count(start, org, end, (service,))
                    _say(f"org={org} service={service} events={events}")
    except FAILURES as exc:
        log.error(str(exc))
        return 1
    finally:
        jc.close()
    _say(f"dry run: {total} events in {job.window()} for {len(job.orgs)} orgs; nothing shipped")
    return 0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Backfill:
    """One job's shipping: its directory, record and per-org states, under the run lock."""

    def __init__(self, cfg: Config, log: Logger, job: Job, lock_wait_s: float | None = None):
        self.cfg, self.log, self.job = cfg, log, job
        self.directory = os.path.join(cfg.state_dir, "backfill", job.key)
        self.record_path = os.path.join(self.directory, JOB_FILE)
        # a scheduled run in progress ends within its budget (and grace)
        self.lock_wait_s = cfg.run_time_budget_seconds + 30 if lock_wait_s is None else lock_wait_s

    def run(self) -> int:
        prepare_state_dir(self.cfg.state_dir)
        lock = InstanceLock(self.cfg.state_dir)
        self._acquire(lock)
        try:
            return self._locked()
        finally:
            lock.release()

    def _acquire(self, lock: InstanceLock) -> None:
        waited_from = time.monotonic()
        told = False
        while True:
            try:
                lock.acquire("backfill")
                return
            except LockHeld:
                holder = lock.holder()
                if not told:
                    told = True
                    self.log.info(
                        "a run holds the lock; the backfill waits for it to finish",
                        holder_pid=holder[0] if holder else "?",
                        wait_at_most_s=self.lock_wait_s,
                    )
                if time.monotonic() - waited_from > self.lock_wait_s:
                    raise
                time.sleep(0.5)

    def _locked(self) -> int:
        record = self._record()
        if record.get("finished"):
            self.log.info(
                f"backfill job {self.job.key} finished at {record['finished']}: nothing to "
                f"ship (window {self.job.window()}); to ship it again, delete {self.directory}",
                orgs=",".join(self.job.orgs),
            )
            return 0
        bcfg = dataclasses.replace(
            self.cfg,
            state_dir=self.directory,
            jumpcloud=dataclasses.replace(self.cfg.jumpcloud, services=self.job.services),
        )
        store = StateStore(self.directory, self.cfg.recent_ids_max)
        store.load()
        ctx = StreamContext(
            bcfg, self.log, store, DeadLetters(self.directory), time.monotonic, float("inf"), FAST
        )
        limiter = RateLimiter(
            self.cfg.jumpcloud.max_requests_per_second,
            self.cfg.retry_base_delay_seconds,
            self.cfg.retry_max_delay_seconds,
        )
        lane = Lane(ctx, time.sleep, self._on_retry, limiter, TokenHolder())
        lane.stream.until_ms = self.job.until_ms
        progress = Progress(self.log, self.cfg.jumpcloud.initial_days_back)
        rc, shipped = 0, 0
        try:
            with progress:
                for org in self.job.orgs:
                    if org in record["done"]:
                        continue
                    ok, count = self._org(org, store, lane, ctx, progress)
                    shipped += count
                    if not ok:
                        rc = 1
                        continue
                    record["done"].append(org)
                    self._save(record)
        finally:
            lane.close()
            store.close()
        if rc == 0:
            record["finished"] = format_ms(now_ms())
            self._save(record)
        self.log.info(
            "backfill finished" if rc == 0 else "backfill stopped; the same command resumes it",
            job=self.job.key,
            orgs=len(self.job.orgs),
            shipped=shipped,
            window=self.job.window(),
        )
        return rc

    def _org(
        self, org: str, store: StateStore, lane: Lane, ctx: StreamContext, progress: Progress
    ) -> tuple[bool, int]:
        """(whether the org's window was shipped to its end, events shipped this time)."""
        state = store.org(org)
        if state.cursor_ms is None and state.floor_ms is None:
            state.floor_ms = self.job.since_ms - 1  # the window starts at since
            store.save(org)
        o = OrgRun(org, state, lane.jc)
        start = state.start_ms(ctx.overlap_ms)
        status, error = "done", None
        if start is None or start < self.job.until_ms:
            progress.begin(o, self.job.until_ms)
            try:
                lane.stream.run(o)
            except FAILURES as exc:
                status, error = "failed", exc
            progress.end(o)
        cursor = format_ms(state.cursor_ms) if state.cursor_ms is not None else "none"
        summary = dict(
            org=org,
            fetched=o.fetched,
            shipped=o.shipped,
            duplicates=o.duplicates,
            skipped=o.skipped,
            batches=o.batches,
            cursor=cursor,
            status=status,
        )
        if error is not None:
            self.log.error(str(error), org=org)
            self.log.error("backfill summary", **summary)
        else:
            self.log.info("backfill summary", **summary)
        store.release(org)
        return error is None, o.shipped

    def _on_retry(self, what: str, reason: str, attempt: int, wait: float) -> None:
        self.log.warning("retrying", call=what, reason=reason, attempt=attempt, wait_s=wait)

    # -- the job record ----------------------------------------------------------------------
    def _record(self) -> dict[str, Any]:
        """job.json, made on the first start (with the window fixed then)."""
        try:
            with open(self.record_path, encoding="utf-8") as handle:
                record = json.load(handle)
        except FileNotFoundError:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            record = {
                "version": 1,
                "orgs": list(self.job.orgs),
                "services": list(self.job.services),
                "since": format_ms(self.job.since_ms),
                "until": format_ms(self.job.until_ms),
                "typed": self.job.typed,
                "started": format_ms(now_ms()),
                "done": [],
                "finished": None,
            }
            self._save(record)
            return record
        except (OSError, ValueError) as exc:
            raise StateError(
                f"{self.record_path}: unreadable ({exc}); delete it to start over"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("done"), list):
            raise StateError(f"{self.record_path}: not a backfill job record; delete it")
        # the window was fixed when the job started: a relative time means that moment's
        self.job = dataclasses.replace(
            self.job, since_ms=parse_ms(record["since"]), until_ms=parse_ms(record["until"])
        )
        return record

    def _save(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, indent=2) + "\n").encode()
        replace_file(self.record_path, data, 0o600, sync=True)
