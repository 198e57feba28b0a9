"""The HTTP server under each simulator: threads, keep-alive, body reading, the access log."""

from __future__ import annotations

import contextlib
import gzip
import logging
import socket
import socketserver
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from .stats import Stats
from .wire import Request, Response

LOG = logging.getLogger("di2siem_sandbox")

# Bodies above the simulator's limit are drained (not stored) up to this size so the client
# still reads the error answer; beyond it the connection is closed instead.
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024
_CHUNK = 1024 * 1024


class Served(Protocol):
    """What the handler needs of the simulator it serves (base.BaseSimulator)."""

    name: str
    stats_counter: Stats

    def body_limit(self, raw_path: str) -> int: ...

    def dispatch(self, request: Request) -> Response: ...


class BodyTooLarge(Exception):
    """The request body exceeds the limit; `size` is the number of bytes seen."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Cut keep-alive connections too, so a stopped simulator really is down."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can hang for seconds
        # in a container without DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class SimServer6(SimServer):
    address_family = socket.AF_INET6


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SimServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        started = time.monotonic()
        sim: Served = self.server.sim  # type: ignore[attr-defined]
        limit = sim.body_limit(self.path)
        try:
            body, oversize = self._read_body(limit), None
        except BodyTooLarge as exc:
            body, oversize = b"", exc.size
        except ValueError as exc:
            self._send(Response.message(400, str(exc)), started)
            return
        request = Request(self.command, self.path, self.headers, body)
        request.oversize = oversize
        try:
            response = sim.dispatch(request)
        except Exception as exc:
            LOG.exception("sandbox %s: handler failed", sim.name)
            response = Response.message(500, f"simulator error: {exc}")
        sim.stats_counter.record(request.path, response.status)
        self._send(response, started)

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = self._read_chunked(limit)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                self._drain(length)
                raise BodyTooLarge(length)
            raw = self.rfile.read(length) if length else b""
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError as exc:
                raise ValueError(f"bad gzip body: {exc}") from None
        return raw

    def _drain(self, length: int) -> None:
        if length > DRAIN_LIMIT_BYTES:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, _CHUNK))
            if not chunk:
                break
            length -= len(chunk)

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            chunk = self.rfile.read(size)
            self.rfile.readline()
            if total <= limit:
                parts.append(chunk)
        if total > limit:
            raise BodyTooLarge(total)
        return b"".join(parts)

    def _send(self, response: Response, started: float) -> None:
        sim: Served = self.server.sim  # type: ignore[attr-defined]
        if response.drop:
            self.close_connection = True
            LOG.info("sandbox=%s method=%s path=%s dropped", sim.name, self.command, self.path)
            return
        try:
            self.send_response(response.status)
            if not any(name.lower() == "content-type" for name in response.headers):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("X-Request-Id", uuid.uuid4().hex)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout tests)
        LOG.info(
            "sandbox=%s method=%s path=%s status=%d bytes_in=%s bytes_out=%d duration_ms=%.1f",
            sim.name,
            self.command,
            self.path,
            response.status,
            self.headers.get("Content-Length", "0"),
            len(response.body),
            (time.monotonic() - started) * 1000,
        )
