"""Prometheus text format for node_exporter's textfile collector (config key ``metrics_file``).

Rewritten after every run, failed ones included: a temp file in the same directory (a
dot-name node_exporter ignores), then ``os.replace``, so a scrape never reads half a file.
Counters come from the lifetime totals in the state, so they only grow (and survive
upgrades); gauges are the org's last run. Labelled by ``org``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from .. import __version__
from ..scheduler.runrecord import totals_of
from ..state.atomicfile import replace_file
from ..timeutil import parse_ms_or_none

COUNTERS = (
    # name, help, totals key, extra labels
    ("di2siem_events_fetched_total", "Events read from JumpCloud (overlap re-reads included).",
     "fetched", ()),
    ("di2siem_events_shipped_total", "Events the SIEM accepted.", "shipped", ()),
    ("di2siem_events_duplicate_total", "Events dropped as already shipped.", "duplicates", ()),
    ("di2siem_events_skipped_total", "Events not shipped, by reason.", "skipped_too_large",
     (("reason", "too_large"),)),
    ("di2siem_events_skipped_total", "Events not shipped, by reason.", "skipped_unparsable",
     (("reason", "unparsable"),)),
    ("di2siem_batches_total", "Batches the SIEM accepted.", "batches", ()),
    ("di2siem_retries_total", "Retried requests, by side.", "retries_jumpcloud",
     (("side", "jumpcloud"),)),
    ("di2siem_retries_total", "Retried requests, by side.", "retries_siem", (("side", "siem"),)),
    ("di2siem_run_failures_total", "Org runs that failed.", "failures", ()),
)  # fmt: skip
GAUGES = (
    ("di2siem_last_run_timestamp_seconds", "When the org's last run ended (Unix time)."),
    ("di2siem_last_success_timestamp_seconds", "When its last successful run ended (0: never)."),
    ("di2siem_last_run_success", "1 when the org's last run succeeded, else 0."),
    ("di2siem_cursor_timestamp_seconds", "Time of the newest event the SIEM accepted (0: none)."),
    ("di2siem_run_duration_seconds", "How long the org's last run took."),
    ("di2siem_catching_up", "1 when the org's last run left a backlog (cut by its time budget)."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs) + "}"


def _seconds(iso: Any) -> float | None:
    ms = parse_ms_or_none(iso)
    return None if ms is None else ms / 1000


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def org_gauges(cursor_ms: int | None, ops: dict[str, Any]) -> dict[str, float]:
    last_run = _seconds(ops.get("last_run"))
    duration = ops.get("last_duration_s")
    values: dict[str, float] = {
        "di2siem_last_success_timestamp_seconds": _seconds(ops.get("last_success")) or 0,
        "di2siem_cursor_timestamp_seconds": cursor_ms / 1000 if cursor_ms is not None else 0,
    }
    if last_run is not None:
        values["di2siem_last_run_timestamp_seconds"] = last_run
        values["di2siem_last_run_success"] = 0 if ops.get("last_status") == "failed" else 1
        values["di2siem_catching_up"] = 1 if ops.get("last_status") == "budget" else 0
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        values["di2siem_run_duration_seconds"] = float(duration)
    return values


def render(orgs: list[tuple[str, int | None, dict[str, Any]]]) -> str:
    """The text for orgs given as (org, cursor ms, ops)."""
    lines = [
        "# HELP di2siem_build_info The di2siem version (always 1).",
        "# TYPE di2siem_build_info gauge",
        f"di2siem_build_info{_labels([('version', __version__)])} 1",
    ]
    done: set[str] = set()
    for name, help_text, key, extra in COUNTERS:
        if name not in done:
            done.add(name)
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for org, _, ops in orgs:
            value = totals_of(ops)[key]
            lines.append(f"{name}{_labels([('org', org), *extra])} {value}")
    gauges = {org: org_gauges(cursor, ops) for org, cursor, ops in orgs}
    for name, help_text in GAUGES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for org, _, _ in orgs:
            value = gauges[org].get(name)
            if value is not None:
                lines.append(f"{name}{_labels([('org', org)])} {_number(value)}")
    return "\n".join(lines) + "\n"


def directory_problem(path: str) -> str | None:
    """Why this user could not write the textfile at path (None: it can). A run writes a temp
    file beside it and renames it, so only the directory counts. For ``di2siem check``."""
    directory = os.path.dirname(path) or "."
    try:
        is_dir = stat.S_ISDIR(os.stat(directory).st_mode)
    except FileNotFoundError:
        return f"{directory} does not exist (metrics_file: create it, or fix the path)"
    except PermissionError:
        return (
            f"{directory} cannot be reached by user {_user_name()}: a parent directory denies it "
            "(metrics_file: let this user traverse its parents, or use another directory)"
        )
    except OSError as exc:
        return f"{directory} cannot be read ({exc.strerror}) (metrics_file: fix the path)"
    if not is_dir:
        return f"{directory} is not a directory (metrics_file: fix the path)"
    if not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"{directory} is not writable by user {_user_name()} (metrics_file: give this user "
            "write access, e.g. the directory's group with g+w, as the role does)"
        )
    return None


def _user_name() -> str:
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def write_atomically(path: str, text: str) -> None:
    """Replace path with text (mode 0644: node_exporter reads it); raises OSError."""
    replace_file(path, text.encode(), 0o644, sync=False)
