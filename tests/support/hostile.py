"""Hostile HTTP peers of our own, on loopback, for tests.

``HostilePeer(behave)`` is a threaded HTTP server on 127.0.0.1 (port 0, optionally TLS) that
records every request it receives and lets ``behave(exchange)`` answer however it likes:
a redirect, a body that trickles one byte a second, a compression bomb, an error body that
echoes the key. Nothing here ever talks to a non-loopback address.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the peer saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = field(repr=False)
    lines: list[tuple[str, str]] = field(default_factory=list, repr=False)  # every header line

    def header_all(self, name: str) -> list[str]:
        """Every value of a header sent on several lines (``headers`` keeps the last)."""
        return [v for k, v in self.lines if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class Exchange:
    """What ``behave`` gets: the request, and ways to answer (well or badly)."""

    def __init__(self, handler: BaseHTTPRequestHandler, peer: HostilePeer, got: Received):
        self._handler = handler
        self.peer = peer
        self.request = got

    def reply(
        self, status: int, body: bytes | str | Any = b"", headers: dict[str, str] | None = None
    ) -> None:
        """A complete, well-formed answer (a str is UTF-8, anything else not bytes is JSON)."""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        h = self._handler
        h.send_response(status)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        all_headers.setdefault("Content-Length", str(len(body)))
        for name, value in all_headers.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def write(self, data: bytes) -> None:
        """Raw bytes on the socket (status line and headers included, if any)."""
        self._handler.wfile.write(data)
        self._handler.wfile.flush()

    def trickle(self, data: bytes, every_s: float = 1.0) -> None:
        """``data`` one byte at a time, ``every_s`` apart, until sent or the peer stops."""
        for i in range(len(data)):
            if self.peer.stopping.wait(every_s if i else 0):
                return
            try:
                self.write(data[i : i + 1])
            except OSError:
                return

    def hold(self, limit_s: float = 60.0) -> None:
        """Never answer: return once the client gave up on the exchange (closed or shut its
        socket down), the peer stops, or after ``limit_s``."""
        sock = self._handler.connection
        sock.settimeout(0.1)
        ends = time.monotonic() + limit_s
        while not self.peer.stopping.is_set() and time.monotonic() < ends:
            try:
                if sock.recv(1) == b"":
                    return
            except socket.timeout:
                continue
            except OSError:
                return


Behaviour = Callable[[Exchange], None]


class HostilePeer:
    def __init__(self, behave: Behaviour, tls: tuple[str, str] | None = None) -> None:
        self.behave = behave
        self.received: list[Received] = []
        self.first_contact: float | None = None  # time.monotonic() of the first request
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                got = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    list(self.headers.items()),
                )
                with peer._lock:
                    peer.received.append(got)
                    if peer.first_contact is None:
                        peer.first_contact = time.monotonic()
                with contextlib.suppress(OSError):
                    peer.behave(Exchange(self, peer, got))
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_CONNECT = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> HostilePeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


class RawPeer:
    """A TCP server on 127.0.0.1 below HTTP (and below TLS): ``behave(sock, peer)`` gets
    each accepted connection, for peers that misbehave before any HTTP is spoken."""

    def __init__(self, behave: Callable[[socket.socket, RawPeer], None]) -> None:
        self.behave = behave
        self.stopping = threading.Event()
        self.connections = 0
        self.first_contact: float | None = None  # time.monotonic() of the first connection
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            if self.first_contact is None:
                self.first_contact = time.monotonic()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.behave(conn, self)

    def __enter__(self) -> RawPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._thread.join()
        self.listener.close()
