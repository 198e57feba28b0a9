"""Cutting one exchange at its deadline: a timer shuts the sockets of the exchange down
wherever it blocks (connect, headers, a body that trickles one byte a second), since socket
timeouts alone are per read. The guarded adapter (session.py) makes every connection it
opens or reuses join the exchange's guard of the current thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any


class ExchangeGuard:
    """Shuts the sockets of one exchange down at its deadline, wherever it blocks (connect,
    headers, a body that trickles one byte a second): socket timeouts alone are per read."""

    def __init__(self, ends: float) -> None:
        self.ends = ends
        self.lock = threading.Lock()
        self.connections: list[Any] = []
        self.fired = False
        self.armed = False
        self.timer: threading.Timer | None = None

    def __enter__(self) -> ExchangeGuard:
        self.armed = True
        self.timer = threading.Timer(max(0.0, self.ends - time.monotonic()), self.fire)
        self.timer.daemon = True
        self.timer.start()
        _current.guard = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.guard = None
        with self.lock:
            self.armed = False
        if self.timer is not None:
            self.timer.cancel()

    def attach(self, connection: Any) -> None:
        with self.lock:
            if self.fired:
                _shut(connection)
            else:
                self.connections.append(connection)

    def fire(self) -> None:
        with self.lock:
            if not self.armed:
                return
            self.fired = True
            for connection in self.connections:
                _shut(connection)


_current = threading.local()


def join_current_guard(connection: Any) -> None:
    guard = getattr(_current, "guard", None)
    if guard is not None:
        guard.attach(connection)


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
