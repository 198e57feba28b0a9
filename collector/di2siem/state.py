"""Atomic state store: ``<state_dir>/state.json``.

Per org: ``cursor`` (time of the newest event the SIEM accepted), ``floor`` (exclusive lower
bound: events at or before it count as shipped), ``served`` (wall time a run last began
reading it; the least recently served org goes first), ``recent_ids`` (id -> epoch ms of shipped
events within the overlap window behind the cursor, capped) and ``ops`` (the run record and
lifetime totals of runrecord.py, opaque here, saved with the cursor so they agree with it).
When the cap forces ids out, the floor rises to the newest evicted time, so a forgotten id
can never be re-read and re-sent.

Writes happen after every accepted batch, so they must stay cheap: ids are kept in chunks
(one per accepted batch) whose JSON fragment is built once and re-joined on every write.
The file is replaced atomically: temp file in state_dir, fsync, os.replace, fsync dir. The
temp file gets a fresh name, created with O_EXCL|O_NOFOLLOW (never an existing file or a
symlink someone planted), and is removed when a write fails; leftovers of killed runs are
removed on load (under the run lock). A write that fails raises StateWriteError naming
state_dir and the cause: the caller must stop, since every later batch would be delivered
and not recorded.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any, Callable

from .atomicfile import unlink_quietly, write_temp
from .timeutil import format_ms, parse_ms

STATE_FILE = "state.json"
VERSION = 1
_LOAD_CHUNK = 4096
_encode = json.JSONEncoder(ensure_ascii=False).encode
_encode_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
    ) -> None:
        self.cursor_ms = cursor_ms
        self.floor_ms = floor_ms
        self.recent = recent if recent is not None else RecentIds()
        self.served_ms = served_ms
        # run record and totals (runrecord.py); during a run ``ops_live`` adds its counts so far
        self.ops: dict[str, Any] = ops if ops is not None else {}
        self.ops_live: Callable[[], dict[str, Any]] | None = None

    def start_ms(self, overlap_ms: int) -> int | None:
        """max(cursor - overlap, floor + 1 ms); None when the org has no state yet."""
        candidates = []
        if self.cursor_ms is not None:
            candidates.append(self.cursor_ms - overlap_ms)
        if self.floor_ms is not None:
            candidates.append(self.floor_ms + 1)
        return max(candidates) if candidates else None

    def json(self) -> str:
        cursor = "null" if self.cursor_ms is None else f'"{format_ms(self.cursor_ms)}"'
        floor = "null" if self.floor_ms is None else f'"{format_ms(self.floor_ms)}"'
        served = "null" if self.served_ms is None else f'"{format_ms(self.served_ms)}"'
        ops = self.ops_live() if self.ops_live is not None else self.ops
        ops_json = f',"ops":{_encode_compact(ops)}' if ops else ""
        return (
            f'{{"cursor":{cursor},"floor":{floor},"served":{served},'
            f'"recent_ids":{self.recent.json()}{ops_json}}}'
        )


def _parse_org(name: str, data: Any, path: str) -> OrgState:
    if not isinstance(data, dict):
        raise StateError(f"{path}: orgs.{name} is not an object")
    try:
        cursor = parse_ms(data["cursor"]) if data.get("cursor") else None
        floor = parse_ms(data["floor"]) if data.get("floor") else None
        served = parse_ms(data["served"]) if data.get("served") else None
    except (ValueError, TypeError):
        raise StateError(f"{path}: orgs.{name} has an unreadable cursor, floor or served") from None
    ids = data.get("recent_ids") or {}
    if not isinstance(ids, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in ids.values()
    ):
        raise StateError(f"{path}: orgs.{name}.recent_ids is not an object of id -> epoch ms")
    ops = data.get("ops")
    return OrgState(
        cursor, floor, RecentIds.from_mapping(ids), served, ops if isinstance(ops, dict) else None
    )


class StateStore:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, STATE_FILE)
        self.tmp_prefix = f".{STATE_FILE}."
        self.orgs: dict[str, OrgState] = {}
        self._dir_fd: int | None = None
        self.writes = 0

    def _remove_stale_temps(self) -> None:
        try:
            names = os.listdir(self.state_dir)
        except OSError:
            return
        for name in names:
            if name.startswith(self.tmp_prefix) and name.endswith(".tmp"):
                unlink_quietly(os.path.join(self.state_dir, name))

    def load(self) -> dict[str, OrgState]:
        self._remove_stale_temps()
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            self.orgs = {}
            return self.orgs
        try:
            data = json.loads(raw)
        except ValueError:
            raise StateError(
                f"{self.path} is not valid JSON; move it aside to start over"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("orgs"), dict):
            raise StateError(f"{self.path} has no orgs object; move it aside to start over")
        self.orgs = {name: _parse_org(name, v, self.path) for name, v in data["orgs"].items()}
        return self.orgs

    def org(self, name: str) -> OrgState:
        state = self.orgs.get(name)
        if state is None:
            state = self.orgs[name] = OrgState()
        return state

    def has(self, name: str) -> bool:
        return name in self.orgs

    def serialize(self) -> bytes:
        orgs = ",".join(f"{_encode(name)}:{st.json()}" for name, st in self.orgs.items())
        return f'{{"version":{VERSION},"orgs":{{{orgs}}}}}\n'.encode()

    def _write_temp(self, data: bytes, sync: bool) -> str:
        """data in a new temp file in state_dir; its path. Removed again on failure."""
        return write_temp(self.state_dir, self.tmp_prefix, data, 0o600, sync)

    def _write_error(self, exc: OSError) -> StateWriteError:
        cause = _HINTS.get(exc.errno or 0, exc.strerror or str(exc))
        return StateWriteError(
            f"cannot write the state in state_dir {self.state_dir}: {cause} "
            f"({exc.strerror or exc}); accepted batches cannot be recorded, so the run stops "
            "here and every run fails until this is fixed (the last unrecorded batch is sent "
            "again then)"
        )

    def check_writable(self) -> None:
        """Before anything is shipped: prove that the current state can be written in
        state_dir (a temp file of the same size, removed again)."""
        try:
            unlink_quietly(self._write_temp(self.serialize(), sync=False))
        except OSError as exc:
            raise self._write_error(exc) from None

    def save(self) -> None:
        data = self.serialize()
        try:
            tmp = self._write_temp(data, sync=True)
            try:
                os.replace(tmp, self.path)
            except BaseException:
                unlink_quietly(tmp)
                raise
            if self._dir_fd is None:
                self._dir_fd = os.open(self.state_dir, os.O_RDONLY)
            os.fsync(self._dir_fd)
        except OSError as exc:
            raise self._write_error(exc) from None
        self.writes += 1

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
