"""Each org's run record and lifetime totals, kept in the state next to its cursor.

Stored as the org's ``ops`` object in its state file ``orgs/<org>.json`` (state.store saves
it opaquely)::

    {"totals": {"fetched": n, "shipped": n, "duplicates": n, "skipped_too_large": n,
                "skipped_unparsable": n, "batches": n, "retries_jumpcloud": n,
                "retries_siem": n, "failures": n},
     "last_run": ISO, "last_success": ISO | null, "last_status": "ok" | "budget" | "failed",
     "last_error": one redacted line naming the side (errors.side_of) | null,
     "last_duration_s": s, "last_shipped": n (that run's),
     "caught_up": the last run reached the end of the org's stream (not cut by the budget),
     "jumpcloud_offset_ms": JumpCloud's clock minus the host's at that run (its Date header),
     "running_since": ISO, only in the writes of a run in progress}

Totals only grow. While an org runs, every state write (one per accepted batch) carries the
totals so far, so ``shipped`` always agrees with the cursor, even after a kill. A state
written by an older version has no ``ops``: its totals start at zero and are kept from then on.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable

from ..engine.context import OrgRun
from ..errors import StateWriteError, side_of
from ..log import Logger
from ..state.orgstate import OrgState
from ..state.store import StateStore
from ..timeutil import format_ms, now_ms

# (JumpCloud retries, SIEM retries) so far, counted by the org's lane
RetryCounts = Callable[[], tuple[int, int]]

TOTALS = (
    "fetched",
    "shipped",
    "duplicates",
    "skipped_too_large",
    "skipped_unparsable",
    "batches",
    "retries_jumpcloud",
    "retries_siem",
    "failures",
)
SKIP_REASONS = {"skipped_too_large": "too_large", "skipped_unparsable": "unparsable"}
MAX_ERROR_CHARS = 400


def totals_of(ops: Any) -> dict[str, int]:
    """The totals of a stored ``ops`` object; zero for anything missing or unreadable."""
    raw = ops.get("totals") if isinstance(ops, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    out = {}
    for key in TOTALS:
        value = raw.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        out[key] = value if ok else 0
    return out


def error_line(exc: BaseException, redact) -> str:
    """One line naming the side first, secrets redacted, bounded."""
    side = side_of(exc)
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    if not text.startswith(side):
        text = f"{side}: {text}"
    text = redact(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


class RunRecorder:
    """Keeps each org's ``ops`` up to date during a run (scheduler hooks: begin, finish)."""

    def __init__(self, store: StateStore, log: Logger) -> None:
        self.store = store
        self.log = log
        self.started_ms = now_ms()
        self.finished: list[str] = []  # orgs this run served, in order
        self._lock = threading.Lock()

    def _live(
        self, o: OrgRun, base: dict[str, int], retries: RetryCounts, retries0: tuple[int, int]
    ) -> dict[str, int]:
        jumpcloud, siem = retries()
        totals = dict(base)
        totals["fetched"] += o.fetched
        totals["shipped"] += o.shipped
        totals["duplicates"] += o.duplicates
        totals["skipped_too_large"] += o.skipped
        totals["skipped_unparsable"] += o.dead_lettered
        totals["batches"] += o.batches
        totals["retries_jumpcloud"] += jumpcloud - retries0[0]
        totals["retries_siem"] += siem - retries0[1]
        return totals

    def begin(self, o: OrgRun, retries: RetryCounts) -> None:
        """From now on every write of the org's state carries its totals so far; ``retries``
        reads its lane's retry counters (its turn counts the retries since now)."""
        state: OrgState = o.state
        base = totals_of(state.ops)
        retries0 = retries()
        running_since = format_ms(now_ms())
        o.ops_totals = lambda: self._live(o, base, retries, retries0)
        state.ops_live = lambda: {
            **state.ops,
            "totals": o.ops_totals(),
            "running_since": running_since,
        }

    def finish(self, o: OrgRun) -> None:
        """Record the org's outcome and save it (a failed save is logged: the state keeps
        every accepted batch, only this record is missing)."""
        state: OrgState = o.state
        totals = o.ops_totals()
        ops = dict(state.ops)
        now = now_ms()
        ops["last_run"] = format_ms(now)
        ops["last_status"] = o.status
        ops["last_duration_s"] = round(time.monotonic() - o.started, 3)
        ops["last_shipped"] = o.shipped
        ops["caught_up"] = o.status == "ok"
        ops.pop("running_since", None)
        clock = o.source.server_clock
        if clock is not None:
            ops["jumpcloud_offset_ms"] = clock[0] - clock[1]
        if o.status == "failed":
            totals["failures"] += 1
            error = o.error if o.error is not None else RuntimeError("di2siem: failed")
            ops["last_error"] = error_line(error, self.log.redact)
            ops.setdefault("last_success", None)
        else:
            ops["last_success"] = format_ms(now)
            ops["last_error"] = None
        ops["totals"] = totals
        state.ops = ops
        state.ops_live = None
        with self._lock:
            self.finished.append(o.org)
        try:
            self.store.save(o.org)
        except StateWriteError as exc:
            self.log.warning(f"run record not saved: {exc}", org=o.org)
