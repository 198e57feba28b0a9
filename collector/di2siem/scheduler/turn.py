"""One turn of the run: an org alone or a shared query's orgs, on one lane. It begins the
orgs' state and run record, runs the stream (or the shared-query router), maps what ended it
to each org's status and the exit code, and writes the orgs' run summary lines."""

from __future__ import annotations

import threading
import time

from ..config import Config
from ..engine.checkpoint import bound
from ..engine.context import OrgRun
from ..engine.decisions import UNPARSABLE
from ..engine.shared import LEAVE_AFTER_PAGES, SharedQuery
from ..errors import (
    BudgetExceeded,
    BudgetReached,
    FatalError,
    GaveUpError,
    OrgRefused,
    StateError,
    StateWriteError,
    WaitPastBudget,
)
from ..log import Logger
from ..perf import peak_rss_mb
from ..source.client import JumpCloudClient
from ..source.refusals import scope_name
from ..state.store import StateStore
from ..timeutil import format_ms, now_ms
from .lanes import Lane, orgs_of
from .plan import Turn
from .progress import Progress
from .runrecord import RunRecorder

SKEW_WARN_MS = 30_000


class TurnServer:
    """Serves turns (``serve``) and keeps what the run's last line counts across lanes."""

    def __init__(
        self,
        cfg: Config,
        log: Logger,
        store: StateStore,
        recorder: RunRecorder,
        progress: Progress,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.store = store
        self.recorder = recorder
        self.progress = progress
        self.unserved = 0  # orgs whose turn the rate cap cut before their first request
        self.shared_turns: list[int] = []  # the size of each shared query served
        self._turned: set[str] = set()  # orgs whose turn began this run
        self._skew_warned = False
        self._lock = threading.Lock()

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
        orun = OrgRun(org, state, lane.jc)
        state.served_ms = now_ms()  # saved with the org's first accepted batch
        if fresh and self.cfg.legacy_end_time_ms is not None:
            state.floor_ms = self.cfg.legacy_end_time_ms
            self.log.info(
                "seeding from the legacy state.end_time",
                org=org,
                floor=format_ms(state.floor_ms),
            )
        self.recorder.begin(orun, lane.retry_counts)
        self.progress.begin(orun)
        return orun

    def serve(self, turn: Turn, lane: Lane) -> tuple[int, bool, list[str]]:
        """One turn, an org alone or a shared query: (exit code, whether the whole run must
        stop, orgs to serve alone next in this run)."""
        runs = []
        rc = 0
        for org in orgs_of(turn):
            orun = self._begin(org, lane)
            if orun is None:
                rc = 1
            else:
                runs.append(orun)
        if not runs:
            return rc, False, []
        shared = SharedQuery(lane.stream, runs) if len(runs) > 1 else None
        label = scope_name(tuple(o.org for o in runs))
        retries_before = lane.retries()
        resent_before = lane.sink.resent
        stop = False
        try:
            if shared is None:
                lane.stream.run(runs[0])
            else:
                shared.run()
        except WaitPastBudget:
            if not any(o.fetched or o.batches or o.skipped for o in runs):
                # the rate cap left it no request before the budget ended: not its turn, so
                # it keeps its place (least recently served) for the next run
                _turn_not_counted(runs)
                for o in runs:
                    self.progress.end(o)
                with self._lock:
                    self.unserved += len(runs)
                return rc, False, []
            self._budget_cut(runs, label)
        except BudgetReached:
            self._budget_cut(runs, label)
        except BudgetExceeded as exc:
            # an exchange was cut at the budget: fine once progress is saved, loud when
            # a stalled peer kept this run from shipping anything
            if any(o.batches for o in runs):
                _ended(runs, "budget")
                self.log.warning(f"{exc}; progress saved, next run resumes", org=label)
            else:
                _ended(runs, "failed", exc)
                self.log.error(f"{exc}; nothing shipped this run", org=label)
                rc = 1
        except OrgRefused as exc:
            if shared is None:
                _ended(runs, "failed", exc)
                self.log.error(str(exc), org=label)
                rc = 1
            else:
                return rc, False, self._refused(runs, exc)
        except (FatalError, GaveUpError) as exc:
            _ended(runs, "failed", exc)
            self.log.error(str(exc), org=label)
            rc = 1
        except StateWriteError as exc:
            # every later batch (and org) would be delivered and not recorded either
            _ended(runs, "failed", exc)
            self.log.error(str(exc), org=label)
            rc = 1
            stop = True
        if rc == 0 and any(o.status == "failed" for o in runs):
            rc = 1  # a member of a shared query failed alone (its window: PositionAhead)
        alone = []
        if shared is not None:
            with self._lock:
                self.shared_turns.append(len(runs))
            if not stop:
                alone = self._unroutable(shared, runs)
        retries = lane.retries() - retries_before
        resent = lane.sink.resent - resent_before
        self._check_skew(lane.jc)
        for o in runs:
            o.retries, o.resent = retries, resent
            self._summary(o, self.progress.end(o))
            self.recorder.finish(o)
            self.store.release(o.org)
        return rc, stop, alone

    def _refused(self, runs: list[OrgRun], exc: OrgRefused) -> list[str]:
        """JumpCloud refused a shared query (402/403), which does not say for which member:
        the turn does not count for any of them (no run record, their place kept), and each
        is served alone next, in this run, so that only the refused org fails."""
        _turn_not_counted(runs)
        for o in runs:
            self.progress.end(o)
            self.store.release(o.org)
        with self._lock:
            self.shared_turns.append(len(runs))
        self.log.warning(
            f"{exc}; the query's orgs are served alone next, so that only the refused one fails",
            orgs=",".join(o.org for o in runs),
        )
        return [o.org for o in runs]

    def _budget_cut(self, runs: list[OrgRun], label: str) -> None:
        for o in runs:
            o.status = "budget"
        _turn_not_counted([o for o in runs if not o.batches], keep_record=True)
        self.log.info(
            "run time budget reached; progress saved, next run resumes",
            org=label,
            budget_s=self.cfg.run_time_budget_seconds,
        )

    def _unroutable(self, shared: SharedQuery, runs: list[OrgRun]) -> list[str]:
        """After a shared query that met an event it could not route: its members are served
        alone from now on (persisted: until their windows start after that event), first
        this run if the budget allows; they keep their place meanwhile."""
        event = shared.unroutable
        if event is None:
            return []
        if shared.left is not None:
            return self._left(shared.left, runs)
        until = bound(runs[0])
        if event.ts_ms is not None:
            until = max(until, event.ts_ms)
        for o in runs:
            o.state.solo_until_ms = until
        _turn_not_counted(runs, keep_record=True)
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

    def _left(self, left: str, runs: list[OrgRun]) -> list:
        """A member's backlog passed LEAVE_AFTER_PAGES pages in a shared query: the others are
        served together next (this run, from what their states recorded), then it alone,
        which keeps to its own stream until it caught up with JumpCloud's clock
        (``solo_until``)."""
        rest = [o.org for o in runs if o.org != left and o.status != "failed"]
        for o in runs:
            if o.org == left:
                o.state.solo_until_ms = bound(o)
        _turn_not_counted(runs, keep_record=True)
        self.log.info(
            "an org of a shared query has a large backlog: it continues alone, so that it "
            "does not hold the others back; they are served together next",
            org=left,
            events_over=LEAVE_AFTER_PAGES * self.cfg.jumpcloud.page_size,
            others=len(rest),
        )
        together: list = [tuple(rest)] if len(rest) > 1 else rest
        return [*together, left]

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

    def _summary(self, o: OrgRun, progress: dict) -> None:
        """The org's run summary line; ``progress``: what Progress.end adds (a budget-cut
        turn: how far through its window, and the runs still needed)."""
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
        fields.update(progress)
        if o.status == "failed":
            self.log.error("run summary", **fields)
        else:
            self.log.info("run summary", **fields)


def _turn_not_counted(runs: list[OrgRun], keep_record: bool = False) -> None:
    """These orgs keep their place (least recently served first) for the next turn; without
    ``keep_record`` their turn leaves no run record either."""
    for o in runs:
        o.state.served_ms = o.served_before
        if not keep_record:
            o.state.ops_live = None


def _ended(runs: list[OrgRun], status: str, error: BaseException | None = None) -> None:
    for o in runs:
        o.end(status, error)
