"""``di2siem status``: is every org shipping? One answer per org, for a person or a script.

Read only: it never takes the run lock and never writes, so it is safe while a run is in
progress. Every state write is an atomic ``os.replace``, so a plain read sees one whole file.

An org is healthy when its last run succeeded within ``max_lag`` and it is caught up: its
last run reached the end of its stream, or its cursor is within ``max_lag`` of JumpCloud's
clock. An org cut by the budget with its cursor further behind is "catching up" and not
healthy, even right after a successful run; a quiet org with nothing new is healthy. A run in
progress (its writes carry ``running_since``, the lock names its live pid) is read as such:
its cursor and what it shipped so far, never "no run recorded yet".
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from .. import __version__
from ..config import Config
from ..errors import NotReached, Side, StateError
from ..redaction import SecretRegistry
from ..scheduler.runrecord import totals_of
from ..state.layout import STATE_FILE
from ..state.reading import read_orgs
from ..timeutil import format_ms, now_ms, parse_ms, parse_ms_or_none

DAY_MS = 86_400_000


def read_state(state_dir: str, orgs: tuple[str, ...]) -> dict[str, Any]:
    """Each org's state without its recent ids ({} before the first run), without the lock;
    an unreadable file is a StateError naming it."""
    return read_orgs(state_dir, orgs)


def read_state_each(state_dir: str, orgs: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """read_state, but one unreadable org file costs only that org: (the readable orgs'
    states, {org: why its file is unreadable}). An unreadable single state.json of an older
    version (every org's) is still one StateError."""
    try:
        return read_orgs(state_dir, orgs), {}
    except StateError:
        if os.path.exists(os.path.join(state_dir, STATE_FILE)):
            raise
    states: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for org in orgs:
        try:
            states.update(read_orgs(state_dir, (org,)))
        except StateError as exc:
            unreadable[org] = str(exc)
    return states, unreadable


def unreadable_status(org: str, error: str, redact) -> dict[str, Any]:
    """The entry of an org whose state file cannot be read: unhealthy, the error names the
    file and the fix."""
    entry = org_status(org, None, now_ms(), 0, redact)
    entry.update(
        healthy=False,
        health="unreadable",
        problem=redact(f"state file unreadable: {error}"),
        error=redact(error),
    )
    return entry


def org_status(
    org: str, data: Any, now: int, max_lag_s: float, redact, run_started: int | None = None
) -> dict[str, Any]:
    """One org's entry; ``run_started``: when the live run holding the lock began (see
    run_holder), None when no run holds it."""
    data = data if isinstance(data, dict) else {}
    ops = data.get("ops") if isinstance(data.get("ops"), dict) else {}
    totals = totals_of(ops)
    cursor = parse_ms_or_none(data.get("cursor"))
    last_run = parse_ms_or_none(ops.get("last_run"))
    last_success = parse_ms_or_none(ops.get("last_success"))
    since = parse_ms_or_none(ops.get("running_since"))
    # the writes of this run, not those a killed run left behind
    running = since is not None and run_started is not None and since >= run_started
    error = ops.get("last_error")
    error = redact(str(error)) if error else None
    offset = ops.get("jumpcloud_offset_ms")
    jumpcloud_now = now + (offset if type(offset) is int else 0)
    lag_s = round((jumpcloud_now - cursor) / 1000) if cursor is not None else None
    behind = lag_s is not None and lag_s > max_lag_s
    caught_up = last_run is not None and ops.get("caught_up", ops.get("last_status") == "ok")
    health, problem = _judge(ops, last_run, last_success, now, max_lag_s, running)
    # a backlog left by the budget (or a first run still going): fine while within max_lag
    catching_up = not caught_up and health in ("healthy", "running")
    if health == "healthy" and catching_up and behind:
        health = "catching_up"
        problem = (
            f"catching up: cursor {_ago(lag_s)} behind JumpCloud "
            f"(more than --max-lag {max_lag_s:g}s)"
        )
    if health == "interrupted" and not running:
        problem += f"; it had shipped {totals['shipped']} (the next run resumes)"
    if health == "running" and cursor is not None:
        where = "more than" if behind else "within"
        problem += (
            f": {totals['shipped']} shipped so far, cursor {_ago(lag_s)} behind JumpCloud "
            f"({where} --max-lag {max_lag_s:g}s)"
        )
    return {
        "org": org,
        "healthy": health == "healthy",
        "health": health,
        "problem": problem,
        "catching_up": catching_up,
        "running": running,
        "cursor": format_ms(cursor) if cursor is not None else None,
        "lag_seconds": lag_s,
        "last_run": format_ms(last_run) if last_run is not None else None,
        "last_success": format_ms(last_success) if last_success is not None else None,
        "last_status": ops.get("last_status"),
        "last_shipped": ops.get("last_shipped"),
        "last_error": error,
        "shipped_total": totals["shipped"],
        "fetched_total": totals["fetched"],
        "duplicates_total": totals["duplicates"],
        "skipped_total": totals["skipped_too_large"] + totals["skipped_unparsable"],
        "dead_lettered_total": totals["skipped_unparsable"],
    }


def _judge(
    ops: dict[str, Any],
    last_run: int | None,
    last_success: int | None,
    now: int,
    max_lag_s: float,
    running_now: bool,
) -> tuple[str, str | None]:
    """(health, problem) from the org's last finished run; a first run still going is
    "running", one that stopped before finishing "interrupted"."""
    if last_run is None:
        if running_now:
            return "running", "first run in progress"
        if parse_ms_or_none(ops.get("running_since")) is not None:
            return "interrupted", "no run finished yet: the first run stopped before its end"
        return "never_run", "no run recorded yet"
    if ops.get("last_status") == "failed":
        return "failed", "the last run failed"
    if last_success is None:
        return "failed", "no successful run yet"
    if now - last_success > max_lag_s * 1000:
        age = round((now - last_success) / 1000)
        return "stale", f"no successful run for {age}s (more than --max-lag {max_lag_s:g}s)"
    return "healthy", None


def run_holder(state_dir: str) -> int | None:
    """When the live run holding the state directory's lock started (epoch ms; 0 when its
    lock file has no start time), None when no live run holds it. Read from the lock file,
    never by taking the lock: the pid it names is alive."""
    from ..state.lock import InstanceLock

    holder = InstanceLock(state_dir).holder()
    if holder is None:
        return None
    try:
        os.kill(holder[0], 0)
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return None
    try:  # a pid the kernel gave to another program since a run died
        with open(f"/proc/{holder[0]}/cmdline", "rb") as handle:
            if b"di2siem" not in handle.read():
                return None
    except OSError:
        pass
    return holder[1] or 0


def _backlog_start(data: Any, cfg: Config, now: int) -> int:
    """Where the next run would begin reading new events: just after the cursor."""
    data = data if isinstance(data, dict) else {}
    cursor, floor = parse_ms_or_none(data.get("cursor")), parse_ms_or_none(data.get("floor"))
    if cursor is not None:
        return cursor + 1
    if floor is not None:
        return floor + 1
    return now + int(cfg.jumpcloud.initial_days_back * DAY_MS)


def add_backlog(
    report: dict[str, Any], orgs: dict[str, Any], cfg: Config, secrets: SecretRegistry
) -> None:
    """``--online``: each org's backlog from JumpCloud's /events/count since its cursor, the
    orgs asked side by side under the request-rate cap, all within one deadline (see
    probes.py); the orgs JumpCloud did not answer for are listed in ``unreachable_orgs``."""
    from ..scheduler.runrecord import error_line
    from ..source.client import JumpCloudClient
    from ..source.tokens import TokenHolder
    from ..throttle import RateLimiter
    from ..transport.retry import RetryPolicy
    from .probes import PROBE_DEADLINE, Deadline, side_by_side, unreached_cause

    deadline = Deadline(cfg.jumpcloud.timeout_seconds)
    limiter = RateLimiter(cfg.jumpcloud.max_requests_per_second)  # one count per org
    tokens = TokenHolder()  # a service account's token: one for every org
    now = now_ms()
    # an org whose state file is unreadable has no known position: no count is asked for it
    # (counting from initial_days_back would state a backlog that is not its own)
    starts = {
        e["org"]: format_ms(_backlog_start(orgs.get(e["org"]), cfg, now))
        for e in report["orgs"]
        if e.get("health") != "unreadable"
    }

    def start_worker():
        policy = RetryPolicy(1, 0.5, 2.0, deadline=deadline.last_start)
        jc = JumpCloudClient(cfg.jumpcloud, policy, secrets=secrets, limiter=limiter, tokens=tokens)
        return (lambda org: jc.count(starts[org], org)), jc.close

    outcomes = side_by_side(list(starts), start_worker, cfg.parallel_orgs, deadline)
    unreachable = []
    for entry in report["orgs"]:
        if entry["org"] not in starts:
            entry["backlog"] = None
            entry["backlog_error"] = "not counted: the org's state file is unreadable (see above)"
            continue
        outcome = outcomes[entry["org"]]
        if isinstance(outcome, int):
            entry["backlog"] = outcome
            entry["runs_to_catch_up"] = _runs_needed(outcome, entry)
            continue
        entry["backlog"] = None
        cause = unreached_cause(outcome, Side.JUMPCLOUD)
        if cause is None:  # JumpCloud answered, and refused (401, 402, ...)
            entry["backlog_error"] = error_line(outcome, secrets.redact)
        else:
            unreachable.append(entry["org"])
            entry["backlog_error"] = error_line(
                NotReached(
                    f"JumpCloud not reached within the {deadline.label}: {cause}",
                    side=Side.JUMPCLOUD,
                ),
                secrets.redact,
            )
    report["deadline_seconds"] = deadline.seconds
    report["deadline"] = PROBE_DEADLINE.replace("timeout_seconds", "jumpcloud.timeout_seconds")
    report["unreachable_orgs"] = unreachable


def _runs_needed(backlog: int, entry: dict[str, Any]) -> int | None:
    """How many more runs a catching-up org needs at its last run's pace (None: not catching
    up, or no pace known yet)."""
    pace = entry.get("last_shipped")
    if not entry["catching_up"] or type(pace) is not int or pace <= 0:
        return None
    return max(1, -(-backlog // pace))


def _redacted(value: Any, redact) -> Any:
    """value with every string in it redacted (keys included), numbers and the rest as is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v, redact) for v in value]
    return value


def build_report(cfg: Config, max_lag_s: float, redact) -> tuple[dict[str, Any], dict]:
    orgs, unreadable = read_state_each(cfg.state_dir, cfg.org_keys)
    now = now_ms()
    run_started = run_holder(cfg.state_dir)
    entries = [
        unreadable_status(org, unreadable[org], redact)
        if org in unreadable
        else org_status(org, orgs.get(org), now, max_lag_s, redact, run_started)
        for org in cfg.org_keys
    ]
    report = {
        "version": __version__,
        "healthy": all(e["healthy"] for e in entries),
        "max_lag_seconds": max_lag_s,
        "orgs": entries,
    }
    if unreadable:
        first = next(iter(unreadable.values()))
        many = len(unreadable) > 1
        count = f"{len(unreadable)} org files unreadable, the first: " if many else ""
        report["error"] = redact(f"state: {count}{first}")
    return report, orgs


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


STATE_WORDS = {
    "healthy": "ok",
    "catching_up": "catching up",
    "running": "running",
    "interrupted": "interrupted",
    "never_run": "never run",
    "failed": "failed",
    "stale": "stale",
    "unreadable": "unreadable",
}


def _state_word(entry: dict[str, Any]) -> str:
    word = STATE_WORDS.get(entry.get("health") or "", "?")
    if entry["healthy"] and entry.get("catching_up"):
        return "ok, catching up"
    if entry.get("running") and entry.get("health") != "running":
        return f"{word}, running"
    return word


def render_table(report: dict[str, Any]) -> str:
    now = now_ms()
    online = any("backlog" in e for e in report["orgs"])
    header = ["ORG", "HEALTHY", "STATE", "LAST SUCCESS", "LAG", "SHIPPED", "FETCHED", "DUPS"]
    header.append("SKIPPED")
    if online:
        header.append("BACKLOG")
    rows = [header]
    for e in report["orgs"]:
        success = e["last_success"]
        success_ago = round((now - parse_ms(success)) / 1000) if success else None
        row = [
            e["org"],
            "yes" if e["healthy"] else "NO",
            _state_word(e),
            f"{success} ({_ago(success_ago)} ago)" if success else "never",
            _ago(e["lag_seconds"]),
            str(e["shipped_total"]),
            str(e["fetched_total"]),
            str(e["duplicates_total"]),
            str(e["skipped_total"]),
        ]
        if online:
            row.append("?" if e.get("backlog") is None else str(e["backlog"]))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for e in report["orgs"]:
        if e["problem"]:
            lines.append(f"{e['org']}: {e['problem']}")
        if e["last_error"]:
            lines.append(f"{e['org']}: last error: {e['last_error']}")
        if e.get("backlog_error"):
            lines.append(f"{e['org']}: backlog unknown: {e['backlog_error']}")
        elif e.get("runs_to_catch_up"):
            lines.append(
                f"{e['org']}: backlog {e['backlog']} events: about {e['runs_to_catch_up']} more "
                f"runs at the last run's {e['last_shipped']} events"
            )
    if report.get("unreachable_orgs"):
        names = report["unreachable_orgs"]
        lines.append(
            f"JumpCloud not reached within the {report['deadline_seconds']:g} s deadline "
            f"({report['deadline']}) for {len(names)} of {len(report['orgs'])} orgs: "
            + ", ".join(names)
        )
    verdict = "healthy" if report["healthy"] else "NOT healthy"
    lines.append(
        f"di2siem {report['version']} status: {verdict} (max lag {report['max_lag_seconds']:g}s)"
    )
    return "\n".join(lines) + "\n"


def run_status(
    cfg: Config, as_json: bool, online: bool, max_lag_s: float, secrets: SecretRegistry
) -> int:
    """Print the report; 0 healthy, 1 not healthy (an unreadable state is not healthy).
    Everything printed is redacted through ``secrets``, the registry where ``--online``'s
    client registers the token it obtains."""
    redact = secrets.redact
    try:
        report, orgs = build_report(cfg, max_lag_s, redact)
    except StateError as exc:
        message = redact(f"state: {exc}")
        if as_json:
            out = {"version": __version__, "healthy": False, "error": message, "orgs": []}
            sys.stdout.write(json.dumps(out) + "\n")
        else:
            sys.stdout.write(f"di2siem {__version__} status: NOT healthy: {message}\n")
        return 1
    if online:
        add_backlog(report, orgs, cfg, secrets)
    if as_json:
        # values redacted before serialising: the line stays JSON whatever a secret is
        sys.stdout.write(json.dumps(_redacted(report, redact)) + "\n")
    else:
        sys.stdout.write(redact(render_table(report)))
    sys.stdout.flush()
    return 0 if report["healthy"] else 1
