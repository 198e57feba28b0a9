"""The state store of a run: each org's state loaded when it is asked for, saved atomically
after every accepted batch, released once the org is served (memory stays bounded by the orgs
being served).

Each file is replaced atomically: temp file in orgs/, fsync, os.replace, fsync dir. The
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
import os
import threading
from collections.abc import Iterable
from typing import Any

from ..errors import StateError, StateWriteError
from .atomicfile import replace_file, unlink_quietly, write_temp
from .layout import (
    DEFAULT_RECENT_IDS_MAX,
    MIGRATED_FILE,
    ORGS_DIR,
    STATE_FILE,
    max_org_file_bytes,
    org_file_name,
)
from .orgstate import OrgState, parse_org
from .reading import read_legacy, read_meta, read_org_file
from .recent import RecentIds

_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file size limit was reached",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


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
            raise self._write_error(exc, self.orgs_dir) from None
        self._remove_stale_temps()
        self._migrate()

    def _migrate(self) -> None:
        legacy = read_legacy(self.legacy_path)
        if legacy is None:
            return
        limit = self.recent_ids_max
        states = {name: parse_org(name, v, self.legacy_path, limit) for name, v in legacy.items()}
        target = self.orgs_dir
        try:
            for name, state in states.items():
                target = self.path_of(name)
                self._write(name, state.json(name).encode(), sync=False)
            target = self.legacy_path
            os.sync()  # one flush for all (an fsync per file costs minutes for 1,000s of orgs)
            os.replace(self.legacy_path, os.path.join(self.state_dir, MIGRATED_FILE))
            fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._write_error(exc, target) from None
        self.migrated = len(states)

    def _load_org(self, name: str) -> OrgState | None:
        path = self.path_of(name)
        data = read_org_file(path, name, self.max_file_bytes)
        return None if data is None else parse_org(name, data, path, self.recent_ids_max)

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

    def _write_error(self, exc: OSError, target: str) -> StateWriteError:
        """The error naming the file (or directory) that could not be written: an org's file,
        orgs/, or an older version's state.json being migrated."""
        said = exc.strerror or str(exc)
        cause = _HINTS.get(exc.errno or 0, said)
        detail = "" if cause.lower() == said.lower() else f" ({said})"
        return StateWriteError(
            f"cannot write the state in state_dir {self.state_dir}: {target}: {cause}{detail}"
            "; accepted batches cannot be recorded, so the run stops "
            "here and every run fails until this is fixed (the last unrecorded batch is sent "
            "again then)"
        )

    def check_writable(self, names: Iterable[str] = ()) -> None:
        """Before anything is shipped: prove that the largest of these orgs' states can be
        written in state_dir (a temp file of the same size, removed again). A file over
        max_file_bytes counts as max_file_bytes: it is refused when its org is loaded (never
        rewritten), and the probe must not cost its size in memory and disk."""
        names = list(names)
        size = len(OrgState().json(names[0] if names else "_default"))
        for name in names:
            with contextlib.suppress(OSError):
                size = max(size, min(os.stat(self.path_of(name)).st_size, self.max_file_bytes))
        try:
            unlink_quietly(self._write_temp(b" " * size, sync=False))
        except OSError as exc:
            target = self.path_of(names[0]) if len(names) == 1 else self.orgs_dir + os.sep
            raise self._write_error(exc, target) from None

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
            raise self._write_error(exc, self.path_of(name)) from None

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
