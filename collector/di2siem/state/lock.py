"""Single instance: fcntl.flock on ``<state_dir>/di2siem.lock``.

The kernel drops the lock when the process dies (even on kill -9), so it is never stale.
The file itself stays; it is never deleted (deleting a flock file races with a waiter).
The holder writes its pid and start time (epoch ms) into it, so a run that finds the lock
held can tell a stuck holder from a busy one; a backfill adds the word ``backfill`` (it may
hold the lock far longer than a run's budget without being stuck).
"""

from __future__ import annotations

import fcntl
import os
import time

from ..errors import LockHeld

LOCK_FILE = "di2siem.lock"


class InstanceLock:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LOCK_FILE)
        self.fd: int | None = None

    def acquire(self, tag: str = "") -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(self.path) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            line = f"{os.getpid()} {int(time.time() * 1000)} {tag}".rstrip()
            os.write(fd, (line + "\n").encode())
        except OSError:
            pass
        self.fd = fd

    def _fields(self) -> list[bytes]:
        """The lock file's words (pid, start ms, tag); [] when it cannot be read."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                return os.read(fd, 100).split()
            finally:
                os.close(fd)
        except OSError:
            return []

    def holder(self) -> tuple[int, int | None] | None:
        """(pid, start epoch ms or None) of the run holding the lock, None when unreadable
        (an older version wrote only the pid; a holder may be writing it right now)."""
        fields = self._fields()
        try:
            pid = int(fields[0])
            started = int(fields[1]) if len(fields) > 1 else None
        except (ValueError, IndexError):
            return None
        return pid, started

    def tag(self) -> str:
        """The holder's word after its pid and start time ("backfill"), "" when none."""
        fields = self._fields()
        return fields[2].decode("ascii", "replace") if len(fields) > 2 else ""

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
