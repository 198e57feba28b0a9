"""Atomic state store: one file per org, ``<state_dir>/orgs/<org>.json``.

Per org: ``cursor`` (time of the newest event the SIEM accepted), ``floor`` (exclusive lower
bound: events at or before it count as shipped), ``served`` (wall time a run last began
reading it; the least recently served org goes first), ``recent_ids`` (id -> epoch ms of shipped
events within the overlap window behind the cursor, capped) and ``ops`` (the run record and
lifetime totals of runrecord.py, opaque here, saved with the cursor so they agree with it).
When the cap forces ids out, the floor rises to the newest evicted time, so a forgotten id
can never be re-read and re-sent.

One file per org: orgs served at the same time (parallel_orgs) write different files, and an
accepted batch rewrites only its own org's file, never everyone's. Writes happen after every
accepted batch, so they must stay cheap: ids are kept in chunks (one per accepted batch) whose
JSON fragment is built once and re-joined on every write. ``recent_ids`` is written last, so
the small part in front of it (``read_meta``) is all that ordering, ``status`` and the metrics
read. Each file is replaced atomically: temp file in orgs/, fsync, os.replace, fsync dir. The
temp file gets a fresh name, created with O_EXCL|O_NOFOLLOW (never an existing file or a
symlink someone planted), and is removed when a write fails; leftovers of killed runs are
removed on load (under the run lock). A write that fails raises StateWriteError naming
state_dir and the cause: the caller must stop, since every later batch would be delivered
and not recorded.

Older versions kept every org in one ``<state_dir>/state.json``. ``load`` migrates it in
place: every org's file is written (and synced) first, then state.json is renamed to
``state.json.v1-migrated`` (one atomic step). A kill before the rename leaves state.json
authoritative and the next load migrates again from it, so a kill at any instant loses
nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterable
from typing import Any, Callable
from urllib.parse import quote, unquote

from .atomicfile import replace_file, unlink_quietly, write_temp
from .timeutil import format_ms, parse_ms

STATE_FILE = "state.json"  # the single file of older versions (format version 1)
MIGRATED_FILE = STATE_FILE + ".v1-migrated"
ORGS_DIR = "orgs"
VERSION = 2
_IDS_MARK = b',"recent_ids":'
_META_READ = 64 * 1024
# the part of an org file in front of its recent ids (cursor, floor, run record) is a few
# hundred bytes; a file without recent_ids in its first MiB was not written by di2siem
META_MAX_BYTES = 1024 * 1024
# The largest org file (or state export) that is read: recent_ids_max entries of at most
# ORG_FILE_BYTES_PER_ID each (a JumpCloud id of 24 hex digits takes 41 bytes with its time,
# a blake2b: digest 57) plus ORG_FILE_SLACK_BYTES for the rest. Reading one costs a few times
# its size in memory, so this is what keeps a run's (and an import's) memory bounded
# whatever a file holds.
ORG_FILE_BYTES_PER_ID = 128
ORG_FILE_SLACK_BYTES = 1024 * 1024
DEFAULT_RECENT_IDS_MAX = 100_000
_LOAD_CHUNK = 4096
_encode = json.JSONEncoder(ensure_ascii=False).encode
_encode_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def max_org_file_bytes(recent_ids_max: int) -> int:
    return recent_ids_max * ORG_FILE_BYTES_PER_ID + ORG_FILE_SLACK_BYTES


class StateError(Exception):
    """The state file exists but cannot be used."""


class StateWriteError(Exception):
    """The state file cannot be written (disk full, read-only, permissions...)."""


_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file size limit was reached",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def unsafe_state_dir(path: str) -> tuple[str, str] | None:
    """(problem, fix) when others could plant or swap files where the cursor lives: the
    directory is not owned by this user, or group/others may write to it; else None."""
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        return (
            f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})",
            "run di2siem as the directory's owner, chown the directory, or set state_dir",
        )
    if st.st_mode & 0o022:
        return (
            f"{path} is writable by group or others (mode {st.st_mode & 0o7777:04o})",
            f"chmod 700 {path}",
        )
    return None


class _Chunk:
    __slots__ = ("fragment", "max_ms", "pairs")

    def __init__(self, pairs: list[tuple[str, int]]) -> None:
        self.pairs = pairs
        self.max_ms = max(ms for _, ms in pairs)
        self.fragment: str | None = None

    def json(self) -> str:
        if self.fragment is None:
            # ids within a chunk are unique (RecentIds.add), so the dict keeps every pair:
            # '"id":ms,...' in one C call, the same text as joining the pairs one by one
            self.fragment = _encode_compact(dict(self.pairs))[1:-1]
        return self.fragment


class RecentIds:
    """Bounded memory of recently shipped event ids (id -> epoch ms)."""

    def __init__(self) -> None:
        self.times: dict[str, int] = {}
        self.chunks: list[_Chunk] = []

    @classmethod
    def from_mapping(cls, mapping: dict[str, int]) -> RecentIds:
        rid = cls()
        pairs = sorted(mapping.items(), key=lambda kv: kv[1])
        rid.times = dict(pairs)
        for start in range(0, len(pairs), _LOAD_CHUNK):
            rid.chunks.append(_Chunk(pairs[start : start + _LOAD_CHUNK]))
        return rid

    @classmethod
    def capped(
        cls, mapping: dict[str, int], limit: int, cursor_ms: int | None
    ) -> tuple[RecentIds, int | None]:
        """The newest ``limit`` ids of mapping and the newest time dropped (the floor must
        rise to it, as in cap(): a forgotten id is never re-read), or None. Ids at or after
        the cursor's millisecond are never dropped (cap() keeps their chunks too)."""
        if len(mapping) <= limit:
            return cls.from_mapping(mapping), None
        pairs = sorted(mapping.items(), key=lambda kv: kv[1])
        cut = len(pairs) - limit
        if cursor_ms is not None:
            while cut > 0 and pairs[cut - 1][1] >= cursor_ms:
                cut -= 1
        if cut == 0:
            return cls.from_mapping(mapping), None
        floor = pairs[cut - 1][1]
        del pairs[:cut]
        return cls.from_mapping(dict(pairs)), floor

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.times

    def __len__(self) -> int:
        return len(self.times)

    def add(self, pairs: list[tuple[str, int]]) -> None:
        times = self.times
        fresh = [pair for pair in pairs if pair[0] not in times]
        new = dict(fresh)
        if len(new) == len(fresh):
            times.update(new)
        else:  # an id twice in pairs: the first one wins
            fresh = []
            for event_id, ms in pairs:
                if event_id not in times:
                    times[event_id] = ms
                    fresh.append((event_id, ms))
        if fresh:
            self.chunks.append(_Chunk(fresh))

    def _drop(self, chunk: _Chunk) -> None:
        times = self.times
        for event_id, ms in chunk.pairs:
            if times.get(event_id) == ms:
                del times[event_id]

    def prune(self, cutoff_ms: int) -> None:
        """Forget chunks whose every id is older than cutoff_ms."""
        if not self.chunks or all(c.max_ms >= cutoff_ms for c in self.chunks):
            return
        keep = []
        for chunk in self.chunks:
            if chunk.max_ms >= cutoff_ms:
                keep.append(chunk)
            else:
                self._drop(chunk)
        self.chunks = keep

    def cap(self, limit: int, cursor_ms: int) -> int | None:
        """Evict the oldest chunks beyond ``limit`` ids; return the newest evicted time (the
        new floor) or None. Chunks at the cursor's millisecond are never evicted."""
        floor = None
        while len(self.times) > limit and len(self.chunks) > 1:
            oldest = min(range(len(self.chunks)), key=lambda k: self.chunks[k].max_ms)
            chunk = self.chunks[oldest]
            if chunk.max_ms >= cursor_ms:
                break
            del self.chunks[oldest]
            self._drop(chunk)
            floor = chunk.max_ms if floor is None else max(floor, chunk.max_ms)
        return floor

    def json(self) -> str:
        return "{" + ",".join(c.json() for c in self.chunks if c.pairs) + "}"


class OrgState:
    def __init__(
        self,
        cursor_ms: int | None = None,
        floor_ms: int | None = None,
        recent: RecentIds | None = None,
        served_ms: int | None = None,
        ops: dict[str, Any] | None = None,
        solo_until_ms: int | None = None,
    ) -> None:
        self.cursor_ms = cursor_ms
        self.floor_ms = floor_ms
        self.recent = recent if recent is not None else RecentIds()
        self.served_ms = served_ms
        # run record and totals (runrecord.py); during a run ``ops_live`` adds its counts so far
        self.ops: dict[str, Any] = ops if ops is not None else {}
        self.ops_live: Callable[[], dict[str, Any]] | None = None
        # a shared query met an event it could not route (grouping.py): the org is served
        # alone until its window starts after this JumpCloud time
        self.solo_until_ms = solo_until_ms

    def start_ms(self, overlap_ms: int) -> int | None:
        """max(cursor - overlap, floor + 1 ms); None when the org has no state yet."""
        candidates = []
        if self.cursor_ms is not None:
            candidates.append(self.cursor_ms - overlap_ms)
        if self.floor_ms is not None:
            candidates.append(self.floor_ms + 1)
        return max(candidates) if candidates else None

    def json(self, name: str) -> str:
        """The org's file: everything small first, ``recent_ids`` last (see read_meta)."""
        cursor = "null" if self.cursor_ms is None else f'"{format_ms(self.cursor_ms)}"'
        floor = "null" if self.floor_ms is None else f'"{format_ms(self.floor_ms)}"'
        served = "null" if self.served_ms is None else f'"{format_ms(self.served_ms)}"'
        ops = self.ops_live() if self.ops_live is not None else self.ops
        ops_json = f'"ops":{_encode_compact(ops)},' if ops else ""
        solo = self.solo_until_ms
        solo_json = "" if solo is None else f'"solo_until":"{format_ms(solo)}",'
        return (
            f'{{"version":{VERSION},"org":{_encode(name)},"served":{served},"cursor":{cursor},'
            f'"floor":{floor},{solo_json}{ops_json}"recent_ids":{self.recent.json()}}}\n'
        )


def _time_field(data: dict[str, Any], key: str) -> int | None:
    """An RFC 3339 field or null; ValueError for anything else (false, 0, "" included)."""
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise ValueError(key)
    return parse_ms(value)


def _parse_org(name: str, data: Any, path: str, limit: int | None = None) -> OrgState:
    """The org's state from its decoded object; with ``limit``, at most that many recent ids
    (the newest; the floor rises to the newest dropped one, see RecentIds.capped)."""
    if not isinstance(data, dict):
        raise StateError(f"{path}: orgs.{name} is not an object")
    try:
        cursor = _time_field(data, "cursor")
        floor = _time_field(data, "floor")
        served = _time_field(data, "served")
        solo_until = _time_field(data, "solo_until")
    except ValueError:
        raise StateError(
            f"{path}: orgs.{name} has an unreadable cursor, floor, served or solo_until"
        ) from None
    ids = data.get("recent_ids")
    ids = {} if ids is None else ids
    if not isinstance(ids, dict) or not all(type(v) is int for v in ids.values()):
        raise StateError(f"{path}: orgs.{name}.recent_ids is not an object of id -> epoch ms")
    ops = data.get("ops")
    if limit is None:
        recent = RecentIds.from_mapping(ids)
    else:
        recent, dropped = RecentIds.capped(ids, limit, cursor)
        if dropped is not None and (floor is None or dropped > floor):
            floor = dropped
    return OrgState(
        cursor,
        floor,
        recent,
        served,
        ops if isinstance(ops, dict) else None,
        solo_until,
    )


def org_file_name(org: str) -> str:
    """The org's file name in orgs/: the id percent-encoded (never a path separator, never a
    leading dot, which temp files use)."""
    name = quote(org, safe="-_.@")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name + ".json"


def org_of_file_name(name: str) -> str | None:
    if name.startswith(".") or not name.endswith(".json"):
        return None
    return unquote(name[: -len(".json")])


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


def _read_legacy(path: str) -> dict[str, Any] | None:
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


def _read_org_file(path: str, name: str, max_bytes: int | None = None) -> dict[str, Any] | None:
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
    legacy = _read_legacy(os.path.join(state_dir, STATE_FILE))
    if legacy is not None:
        return {n: v for n, v in legacy.items() if isinstance(v, dict)}
    orgs_dir = os.path.join(state_dir, ORGS_DIR)
    out = {}
    for name in names:
        meta = read_meta(os.path.join(orgs_dir, org_file_name(name)), name)
        if meta is not None:
            out[name] = meta
    return out


class StateStore:
    def __init__(self, state_dir: str, recent_ids_max: int = DEFAULT_RECENT_IDS_MAX) -> None:
        self.state_dir = state_dir
        # the memory bound: an org loads at most this many ids, from a file of at most
        # max_org_file_bytes (a larger one is refused, never read whole)
        self.recent_ids_max = recent_ids_max
        self.max_file_bytes = max_org_file_bytes(recent_ids_max)
        self.orgs_dir = os.path.join(state_dir, ORGS_DIR)
        self.legacy_path = os.path.join(state_dir, STATE_FILE)
        self.orgs: dict[str, OrgState] = {}  # loaded (being served or served this run)
        self._dir_fd: int | None = None
        self._lock = threading.Lock()
        self.migrated = 0  # orgs moved out of an older version's state.json by load()

    def path_of(self, name: str) -> str:
        return os.path.join(self.orgs_dir, org_file_name(name))

    def _remove_stale_temps(self) -> None:
        try:
            names = os.listdir(self.orgs_dir)
        except OSError:
            return
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                unlink_quietly(os.path.join(self.orgs_dir, name))
        # an older version's temp files next to state.json
        try:
            names = os.listdir(self.state_dir)
        except OSError:
            return
        prefix = f".{STATE_FILE}."
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                unlink_quietly(os.path.join(self.state_dir, name))

    def load(self) -> None:
        """Prepare orgs/ (under the run lock): migrate an older version's state.json, remove
        temp files of killed runs. Org files are read when an org is asked for (org())."""
        try:
            os.makedirs(self.orgs_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from None
        self._remove_stale_temps()
        self._migrate()

    def _migrate(self) -> None:
        legacy = _read_legacy(self.legacy_path)
        if legacy is None:
            return
        limit = self.recent_ids_max
        states = {name: _parse_org(name, v, self.legacy_path, limit) for name, v in legacy.items()}
        try:
            for name, state in states.items():
                self._write(name, state.json(name).encode(), sync=False)
            os.sync()  # one flush for all (an fsync per file costs minutes for 1,000s of orgs)
            os.replace(self.legacy_path, os.path.join(self.state_dir, MIGRATED_FILE))
            fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._write_error(exc) from None
        self.migrated = len(states)

    def _load_org(self, name: str) -> OrgState | None:
        path = self.path_of(name)
        data = _read_org_file(path, name, self.max_file_bytes)
        return None if data is None else _parse_org(name, data, path, self.recent_ids_max)

    def org(self, name: str) -> OrgState:
        """The org's state (read from its file the first time; empty when it has none)."""
        with self._lock:
            state = self.orgs.get(name)
        if state is None:
            state = self._load_org(name) or OrgState()
            with self._lock:
                state = self.orgs.setdefault(name, state)
        return state

    def has(self, name: str) -> bool:
        return name in self.orgs or os.path.exists(self.path_of(name))

    def meta(self, name: str) -> dict[str, Any] | None:
        """The org's file without its recent ids (see read_meta); None when it has none or
        it is unreadable (its turn reports the problem)."""
        try:
            return read_meta(self.path_of(name), name)
        except StateError:
            return None

    def forget(self, name: str) -> None:
        """Drop the org's loaded state, so that a second turn in the same run reads its file
        again (release() emptied its recent ids)."""
        with self._lock:
            self.orgs.pop(name, None)

    def serialize(self, name: str) -> bytes:
        return self.org(name).json(name).encode()

    def _write_temp(self, data: bytes, sync: bool) -> str:
        """data in a new temp file in orgs/; its path. Removed again on failure."""
        return write_temp(self.orgs_dir, ".", data, 0o600, sync)

    def _write_error(self, exc: OSError) -> StateWriteError:
        cause = _HINTS.get(exc.errno or 0, exc.strerror or str(exc))
        return StateWriteError(
            f"cannot write the state in state_dir {self.state_dir}: {cause} "
            f"({exc.strerror or exc}); accepted batches cannot be recorded, so the run stops "
            "here and every run fails until this is fixed (the last unrecorded batch is sent "
            "again then)"
        )

    def check_writable(self, names: Iterable[str] = ()) -> None:
        """Before anything is shipped: prove that the largest of these orgs' states can be
        written in state_dir (a temp file of the same size, removed again)."""
        names = list(names)
        size = len(OrgState().json(names[0] if names else "_default"))
        for name in names:
            with contextlib.suppress(OSError):
                size = max(size, os.stat(self.path_of(name)).st_size)
        try:
            unlink_quietly(self._write_temp(b" " * size, sync=False))
        except OSError as exc:
            raise self._write_error(exc) from None

    def _write(self, name: str, data: bytes, sync: bool = True) -> None:
        """Replace the org's file with data (durably unless not ``sync``). Raises OSError."""
        replace_file(self.path_of(name), data, 0o600, sync, prefix=".")
        with self._lock:
            if self._dir_fd is None:
                self._dir_fd = os.open(self.orgs_dir, os.O_RDONLY)
            dir_fd = self._dir_fd
        if sync:
            os.fsync(dir_fd)

    def save(self, name: str) -> None:
        """Write one org's state (only that org's file)."""
        data = self.serialize(name)
        try:
            self._write(name, data)
        except OSError as exc:
            raise self._write_error(exc) from None

    def release(self, name: str) -> None:
        """Forget the org's recent ids once it is served (its file keeps them): memory stays
        bounded by the orgs being served, not by every org of the run."""
        state = self.orgs.get(name)
        if state is not None:
            state.recent = RecentIds()

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def snapshot(state_dir: str) -> dict[str, Any]:
    """Every org's whole state as one object ``{"version", "orgs": {org: {...}}}`` (tests,
    support): the org files, or an older version's state.json while it is not migrated."""
    legacy = _read_legacy(os.path.join(state_dir, STATE_FILE))
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
            data = _read_org_file(os.path.join(orgs_dir, file_name), org)
            if data is not None:
                orgs[org] = data
    return {"version": VERSION, "orgs": orgs}
