"""``di2siem state export|import``: move one org's cursor and recent ids between hosts.

The file (format ``di2siem-org-state``, version 1; see docs/state.md)::

    {"format": "di2siem-org-state", "version": 1, "org": "<id>",
     "exported_at": ISO, "di2siem_version": "x.y.z",
     "cursor": ISO | null, "floor": ISO | null, "recent_ids": {"<id>": epoch ms, ...}}

Both commands hold the run lock (waiting up to ``--wait`` seconds for a run to end), so a
state never changes under them. Import only ever moves the org forward: when this host's
state of the org is newer than the file's, nothing changes unless ``--force`` (then the org
goes back to the file's point and says so: events this host shipped after it are sent again,
duplicates but no loss). Run records (``ops``: totals, last run) stay with the host.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from .. import __version__
from ..config import DEFAULT_ORG, PROVIDER_PREFIX, Config, org_key_problem
from ..errors import HandoffError, LockHeld, StateError, StateWriteError
from ..timeutil import FUTURE_MARGIN_MS, format_ms, now_ms, parse_ms
from .atomicfile import replace_file
from .layout import ORG_FILE_BYTES_PER_ID, max_org_file_bytes
from .lock import InstanceLock
from .orgstate import OrgState
from .recent import RecentIds
from .store import StateStore

FORMAT = "di2siem-org-state"
FORMAT_VERSION = 1
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _locked(cfg: Config, wait_s: float) -> InstanceLock:
    if not os.path.isdir(cfg.state_dir):
        raise HandoffError(f"state_dir {cfg.state_dir} does not exist (no run here yet)")
    lock = InstanceLock(cfg.state_dir)
    ends = time.monotonic() + wait_s
    while True:
        try:
            lock.acquire()
            return lock
        except LockHeld:
            if time.monotonic() >= ends:
                raise HandoffError(
                    f"a run holds the lock {lock.path} (waited {wait_s:g}s); try again when it "
                    "has ended (or stop the schedule first)",
                    EXIT_FAILURE,
                ) from None
            time.sleep(0.2)


def _store(cfg: Config) -> StateStore:
    store = StateStore(cfg.state_dir, cfg.recent_ids_max)
    try:
        store.load()
    except (StateError, StateWriteError) as exc:
        raise HandoffError(f"state unusable: {exc}", EXIT_FAILURE) from None
    return store


def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _position(state: OrgState) -> str:
    """How a summary line says where an org is: ``cursor <time>``, then ``floor <time>``
    only when it has one (``cursor none``: nothing shipped yet)."""
    said = f"cursor {_iso(state.cursor_ms) or 'none'}"
    return said + (f" floor {_iso(state.floor_ms)}" if state.floor_ms is not None else "")


def export_document(org: str, state: OrgState) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "org": org,
        "exported_at": format_ms(now_ms()),
        "di2siem_version": __version__,
        "cursor": _iso(state.cursor_ms),
        "floor": _iso(state.floor_ms),
        "recent_ids": state.recent.times,
    }


def export_org(cfg: Config, org: str, output: str | None, wait_s: float) -> str:
    """Write the org's state to output (or stdout); the one-line summary."""
    lock = _locked(cfg, wait_s)
    try:
        store = _store(cfg)
        try:
            if not store.has(org):
                raise HandoffError(f"org {org} has no state in {cfg.state_dir} (never served here)")
            state = store.org(org)
        except StateError as exc:
            raise HandoffError(f"state unusable: {exc}", EXIT_FAILURE) from None
        text = json.dumps(export_document(org, state), separators=(",", ":")) + "\n"
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            _write_file(output, text)
    finally:
        lock.release()
    where = output or "stdout"
    return f"org {org}: exported {_position(state)} recent_ids {len(state.recent)} to {where}"


def _write_file(path: str, text: str) -> None:
    try:
        replace_file(path, text.encode(), 0o600, sync=True)
    except OSError as exc:
        raise HandoffError(f"--output {path}: {exc.strerror or exc}", EXIT_FAILURE) from None


def _time(doc: dict[str, Any], key: str, path: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        return parse_ms(value)
    except ValueError:
        raise HandoffError(f"{path}: {key} is not an RFC 3339 time or null") from None


def read_document(path: str, recent_ids_max: int) -> tuple[str, OrgState]:
    """The org and its state from an export file, at most ``recent_ids_max`` recent ids (the
    newest; the floor rises to the newest dropped one); HandoffError (exit 2) when it is not
    one, or larger than an export of recent_ids_max ids can be (not read then)."""
    limit = max_org_file_bytes(recent_ids_max)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise HandoffError(
                    f"{path} is {size} bytes, more than an export of recent_ids_max="
                    f"{recent_ids_max} ids can be ({limit} bytes: {ORG_FILE_BYTES_PER_ID} per id "
                    "plus 1 MiB); not read. Export it again with this recent_ids_max, or raise "
                    "recent_ids_max"
                )
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise HandoffError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise HandoffError(f"{path} grew past {limit} bytes while read; nothing changed")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise HandoffError(f"{path} is not JSON (not a di2siem state export)") from None
    del raw
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HandoffError(f"{path} is not a di2siem state export (format is not {FORMAT!r})")
    version = doc.get("version")
    if type(version) is not int or version != FORMAT_VERSION:  # true == 1 in Python
        raise HandoffError(
            f"{path} has format version {json.dumps(version)}; this di2siem {__version__} "
            f"reads version {FORMAT_VERSION}: import it with the version that exported it"
        )
    org = doc.get("org")
    if not isinstance(org, str) or not org:
        raise HandoffError(f"{path}: org is missing")
    problem = org_key_problem(org)
    if problem is not None:
        raise HandoffError(f"{path}: org {json.dumps(org)} {problem}; nothing changed")
    ids = doc.get("recent_ids")
    if not isinstance(ids, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in ids.items()
    ):
        raise HandoffError(f"{path}: recent_ids is not an object of id -> epoch ms")
    cursor, floor = _time(doc, "cursor", path), _time(doc, "floor", path)
    recent, dropped = RecentIds.capped(ids, recent_ids_max, cursor)
    if dropped is not None and (floor is None or dropped > floor):
        floor = dropped
    return org, OrgState(cursor, floor, recent)


def _refuse_future(path: str, state: OrgState) -> None:
    """An import never installs a position past this host's clock (plus FUTURE_MARGIN_MS):
    the next run would count every event until then as shipped."""
    latest = now_ms() + FUTURE_MARGIN_MS
    for key, ms in (("cursor", state.cursor_ms), ("floor", state.floor_ms)):
        if ms is not None and ms > latest:
            raise HandoffError(
                f"{path}: {key} {format_ms(ms)} lies more than {FUTURE_MARGIN_MS // 60_000} "
                f"minutes past this host's clock ({format_ms(now_ms())}); nothing changed. Set "
                f"{key} to the last time really shipped (or fix this host's clock) and import "
                "again"
            )


def _org_fits(cfg: Config, org: str) -> str | None:
    """Why this config cannot serve the org, or None. An org id missing from
    jumpcloud.org_ids is fine: the handoff imports before the new owner lists it."""
    if org.startswith(PROVIDER_PREFIX):
        if org in cfg.org_keys:
            return None
        provider = org[len(PROVIDER_PREFIX) :]
        return f"the file holds the MSP portal stream, but jumpcloud.provider_id is not {provider}"
    if cfg.jumpcloud.org_ids:
        if org == DEFAULT_ORG:
            return "the file holds the single-org stream (_default), but jumpcloud.org_ids is set"
        return None
    if org != DEFAULT_ORG:
        return f"the file holds org {org}, but this config has no jumpcloud.org_ids (single org)"
    return None


def _point(state: OrgState) -> int:
    """How far the org has got: the later of cursor and floor (-1: nowhere yet)."""
    return max(x for x in (state.cursor_ms, state.floor_ms, -1) if x is not None)


def import_org(cfg: Config, path: str, expected_org: str | None, force: bool, wait_s: float) -> str:
    """Install the file's state for its org; the one-line summary."""
    org, incoming = read_document(path, cfg.recent_ids_max)
    _refuse_future(path, incoming)
    if expected_org is not None and org != expected_org:
        raise HandoffError(f"{path} holds org {org}, not --org {expected_org}; nothing changed")
    misfit = _org_fits(cfg, org)
    if misfit is not None:
        raise HandoffError(f"{path}: {misfit} ({cfg.path}); nothing changed")
    lock = _locked(cfg, wait_s)
    try:
        store = _store(cfg)
        try:
            local = store.org(org)
        except StateError as exc:
            raise HandoffError(f"state unusable: {exc}", EXIT_FAILURE) from None
        was = _position(local)
        note = ""
        if _point(local) > _point(incoming):
            if not force:
                raise HandoffError(
                    f"org {org}: this host's state is newer ({was}) than {path} "
                    f"({_position(incoming)}); "
                    "nothing changed. --force goes back to the file's point (events shipped "
                    "here after it are sent again unless still remembered: duplicates, no loss)"
                )
            note = "; went BACK from this host's newer state (--force)"
        # every id either side remembers was shipped: both stay remembered
        merged = {**local.recent.times, **incoming.recent.times}
        local.cursor_ms, local.floor_ms = incoming.cursor_ms, incoming.floor_ms
        local.recent, dropped = RecentIds.capped(merged, cfg.recent_ids_max, incoming.cursor_ms)
        del merged
        if dropped is not None and (local.floor_ms is None or dropped > local.floor_ms):
            local.floor_ms = dropped
        _refuse_future(path, local)
        try:
            store.save(org)
        except StateWriteError as exc:
            raise HandoffError(str(exc), EXIT_FAILURE) from None
        finally:
            store.close()
    finally:
        lock.release()
    listed = org in cfg.org_keys
    served = "" if listed else f"; served once {cfg.path} lists it"
    return (
        f"org {org}: imported {_position(incoming)} recent_ids {len(incoming.recent)} "
        f"(was {was})"
        f"{note}{served}"
    )
