"""Atomic replaces (org state files, the metrics textfile, state exports) through temp files:
a fresh name, created with O_EXCL|O_NOFOLLOW (never an existing file or a symlink someone
planted), the exact mode whatever the umask, removed again when writing fails."""

from __future__ import annotations

import contextlib
import os
import secrets

_datasync = getattr(os, "fdatasync", os.fsync)


def write_temp(directory: str, prefix: str, data: bytes, mode: int, sync: bool) -> str:
    """data in a new file ``<directory>/<prefix><random>.tmp``; its path. Raises OSError."""
    tmp = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            _datasync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(tmp)
        raise
    os.close(fd)
    return tmp


def replace_file(path: str, data: bytes, mode: int, sync: bool, prefix: str | None = None) -> None:
    """Replace path with data through a temp file beside it (named ``<prefix><random>.tmp``,
    by default ``.<name>.``), removed again when the replace fails. Raises OSError."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = write_temp(directory, f".{name}." if prefix is None else prefix, data, mode, sync)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
