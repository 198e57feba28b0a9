"""Reading org files without the lock (status, metrics, exports, tests): whole, or only
the part in front of their recent ids; an older version's state.json while it is not
migrated yet; every org at once (``snapshot``). Each read is bounded by the file's size."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from ..errors import StateError
from .layout import (
    META_MAX_BYTES,
    ORGS_DIR,
    STATE_FILE,
    VERSION,
    org_file_name,
    org_of_file_name,
)

_IDS_MARK = b',"recent_ids":'
_META_READ = 64 * 1024


def _read_bytes(path: str, max_bytes: int | None = None, why: str = "") -> bytes | None:
    """The file's bytes, None when it does not exist; StateError when it cannot be read or is
    larger than max_bytes (checked before reading: it is never read whole then)."""
    try:
        with open(path, "rb") as fh:
            if max_bytes is not None:
                size = os.fstat(fh.fileno()).st_size
                if size > max_bytes:
                    raise StateError(f"{path} is {size} bytes, more than {max_bytes} {why}")
            return fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path} ({exc.strerror})") from None


def read_legacy(path: str) -> dict[str, Any] | None:
    """The ``orgs`` object of an older version's state.json, None when there is none."""
    raw = _read_bytes(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise StateError(f"{path} is not valid JSON; move it aside to start over") from None
    if not isinstance(data, dict) or not isinstance(data.get("orgs"), dict):
        raise StateError(f"{path} has no orgs object; move it aside to start over")
    return data["orgs"]


def read_org_file(path: str, name: str, max_bytes: int | None = None) -> dict[str, Any] | None:
    why = (
        "(the most an org file of recent_ids_max ids can hold): not written by di2siem; "
        f"move it aside to start org {name} over, or raise recent_ids_max"
    )
    raw = _read_bytes(path, max_bytes, why)
    if raw is not None and max_bytes is not None and len(raw) > max_bytes:
        raise StateError(f"{path} grew past {max_bytes} bytes while read {why}")
    return None if raw is None else _org_object(raw, path, name)


def _org_object(raw: bytes, path: str, name: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise StateError(
            f"{path} is not valid JSON; move it aside to start org {name} over"
        ) from None
    if not isinstance(data, dict) or data.get("org") != name:
        raise StateError(f"{path} is not the state of org {name}; move it aside")
    return data


def read_meta(path: str, name: str) -> dict[str, Any] | None:
    """An org file without its ``recent_ids`` (cursor, floor, served, ops), reading only the
    part in front of them; None when the file does not exist. Raises StateError."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (the with below: open's errors differ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path} ({exc.strerror})") from None
    with fh:
        head = b""
        while True:
            chunk = fh.read(_META_READ)
            at = (head[-len(_IDS_MARK) :] + chunk).find(_IDS_MARK)
            if at >= 0:  # JSON strings escape quotes, so the mark is never inside one
                cut = max(0, len(head) - len(_IDS_MARK)) + at
                head = head + chunk
                return _org_object(head[:cut] + b"}", path, name)
            head += chunk
            if not chunk:
                return _org_object(head, path, name)
            if len(head) > META_MAX_BYTES:
                raise StateError(
                    f"{path} has no recent_ids in its first {META_MAX_BYTES} bytes (not written "
                    f"by di2siem); move it aside to start org {name} over"
                )


def read_orgs(state_dir: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Read only, without the lock (status, metrics): each named org's state without its
    recent ids; an older version's state.json while it is not migrated yet."""
    legacy = read_legacy(os.path.join(state_dir, STATE_FILE))
    if legacy is not None:
        return {n: v for n, v in legacy.items() if isinstance(v, dict)}
    orgs_dir = os.path.join(state_dir, ORGS_DIR)
    out = {}
    for name in names:
        meta = read_meta(os.path.join(orgs_dir, org_file_name(name)), name)
        if meta is not None:
            out[name] = meta
    return out


def snapshot(state_dir: str) -> dict[str, Any]:
    """Every org's whole state as one object ``{"version", "orgs": {org: {...}}}`` (tests,
    support): the org files, or an older version's state.json while it is not migrated."""
    legacy = read_legacy(os.path.join(state_dir, STATE_FILE))
    if legacy is not None:
        return {"version": 1, "orgs": legacy}
    orgs: dict[str, Any] = {}
    orgs_dir = os.path.join(state_dir, ORGS_DIR)
    try:
        names = sorted(os.listdir(orgs_dir))
    except FileNotFoundError:
        names = []
    for file_name in names:
        org = org_of_file_name(file_name)
        if org is not None:
            data = read_org_file(os.path.join(orgs_dir, file_name), org)
            if data is not None:
                orgs[org] = data
    return {"version": VERSION, "orgs": orgs}
