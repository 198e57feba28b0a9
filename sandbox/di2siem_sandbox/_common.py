"""Plumbing shared by both simulators: server lifecycle, request handler, faults, stats."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import socketserver
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

LOG = logging.getLogger("di2siem_sandbox")

# Bodies above the simulator's limit are drained (not stored) up to this size so the client
# still reads the error answer; beyond it the connection is closed instead.
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024
CONTROL_BODY_LIMIT_BYTES = 512 * 1024 * 1024
_CHUNK = 1024 * 1024


class BodyTooLarge(Exception):
    """The request body exceeds the limit; `size` is the number of bytes seen."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass
class Fault:
    """A canned answer for the next `count` matching requests (count < 0: forever).

    `status=None`, or 200 without `body`, answers normally (after `delay_s`): a slow response.
    """

    status: int | None = None
    count: int = 1
    retry_after: float | str | None = None
    path: str | None = None
    body: Any = None
    delay_s: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError("a fault is a JSON object")
        unknown = set(data) - {"status", "count", "retry_after", "path", "body", "delay_s"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    def matches(self, path: str) -> bool:
        return self.path is None or path == self.path or path.endswith(self.path)

    def replaces_answer(self) -> bool:
        return self.status is not None and not (self.status == 200 and self.body is None)

    def body_bytes(self, reason: str) -> bytes:
        if self.body is None:
            return json.dumps({"message": f"simulated fault: {self.status} {reason}"}).encode()
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class FaultQueue:
    """Faults are served in the order they were injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(path):
                    if fault.count > 0:
                        fault.count -= 1
                        if fault.count == 0:
                            del self._faults[index]
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {k: v for k, v in asdict(f).items() if not isinstance(v, bytes)}
                for f in self._faults
            ]


class Stats:
    """Thread-safe request counters: by path and status, plus free-form counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._by_path: dict[str, dict[str, int]] = {}
            self._counters: dict[str, int] = {}
            self._requests = 0

    def record(self, path: str, status: int) -> None:
        with self._lock:
            self._requests += 1
            statuses = self._by_path.setdefault(path, {})
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    def incr(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + amount

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_status: dict[str, int] = {}
            for statuses in self._by_path.values():
                for status, n in statuses.items():
                    by_status[status] = by_status.get(status, 0) + n
            return {
                "requests": self._requests,
                "by_path": {p: dict(s) for p, s in self._by_path.items()},
                "by_status": by_status,
                "faults_served": 0,
                **self._counters,
            }


class Request:
    """What a handler needs from one HTTP request."""

    def __init__(self, method: str, raw_path: str, headers: Any, body: bytes) -> None:
        parts = urlsplit(raw_path)
        self.method = method
        self.path = parts.path.rstrip("/") or "/"
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body
        self.oversize: int | None = None  # set when the body was drained, not kept

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self) -> Any:
        """Parse the body; raises ValueError with a readable message."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None


class Response:
    def __init__(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), headers)

    @classmethod
    def message(cls, status: int, text: str, **extra: Any) -> Response:
        return cls.json(status, {"message": text, **extra})


Handler = Callable[[Request], Response]


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


class _RequestHandler(BaseHTTPRequestHandler):
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
        sim: BaseSimulator = self.server.sim  # type: ignore[attr-defined]
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
        sim: BaseSimulator = self.server.sim  # type: ignore[attr-defined]
        try:
            self.send_response(response.status)
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


class BaseSimulator:
    """Lifecycle (start/stop/url/context manager), faults and control-API plumbing."""

    name = "sim"
    api_body_limit = CONTROL_BODY_LIMIT_BYTES

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._requested_port = port
        self._server: SimServer | None = None
        self._thread: threading.Thread | None = None
        self.faults = FaultQueue()
        self.stats_counter = Stats()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=10000)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> BaseSimulator:
        if self._server is not None:
            return self
        server_class = SimServer6 if ":" in self.host else SimServer
        server = server_class((self.host, self._requested_port), _RequestHandler)
        server.sim = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> BaseSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} simulator is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    @property
    def stats(self) -> dict[str, Any]:
        return self.stats_counter.snapshot()

    # -- faults ----------------------------------------------------------------------------
    def inject_fault(
        self,
        status: int | None,
        count: int = 1,
        retry_after: float | str | None = None,
        path: str | None = None,
        body: Any = None,
        delay_s: float | None = None,
    ) -> None:
        """Answer the next `count` API requests (matching `path` if given) with `status`.

        `retry_after` adds a Retry-After header; `body` (bytes, str or JSON value) replaces the
        answer body (with status 200: a malformed success); `delay_s` sleeps first.
        `status=None` with `delay_s` gives a slow but normal answer. `count < 0`: forever.
        """
        self.faults.add(Fault(status, count, retry_after, path, body, delay_s))

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- dispatch --------------------------------------------------------------------------
    def body_limit(self, raw_path: str) -> int:
        if raw_path.startswith("/_sim/"):
            return CONTROL_BODY_LIMIT_BYTES
        return self.api_body_limit

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_sim/"):
            return self.control(request)
        fault = self.faults.take(request.path)
        if fault is not None:
            self.stats_counter.incr("faults_served")
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.replaces_answer():
                return self._fault_response(fault)
        return self.handle_api(request)

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        from http import HTTPStatus

        status = int(fault.status or 500)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "fault"
        headers = {}
        if fault.retry_after is not None:
            value = fault.retry_after
            if isinstance(value, (int, float)) and float(value).is_integer():
                value = int(value)
            headers["Retry-After"] = str(value)  # a string passes through (HTTP-date tests)
        return Response(status, fault.body_bytes(reason), headers)

    def handle_api(self, request: Request) -> Response:
        raise NotImplementedError

    def control(self, request: Request) -> Response:
        route = (request.method, request.path)
        if route == ("GET", "/_sim/stats"):
            return Response.json(200, self.stats)
        if route == ("POST", "/_sim/faults"):
            return self._control_faults(request)
        if route == ("GET", "/_sim/faults"):
            return Response.json(200, self.faults.pending())
        if route == ("POST", "/_sim/reset"):
            self.reset()
            return Response.json(200, {"reset": True})
        return self.extra_control(request)

    def extra_control(self, request: Request) -> Response:
        return Response.message(404, f"no control route {request.method} {request.path}")

    def _control_faults(self, request: Request) -> Response:
        try:
            data = request.json()
            items = data if isinstance(data, list) else [data]
            faults = [Fault.from_json(item) for item in items]
        except (ValueError, TypeError) as exc:
            return Response.message(400, str(exc))
        for fault in faults:
            self.faults.add(fault)
        return Response.json(200, {"faults": self.faults.pending()})

    def reset(self) -> None:
        self.faults.clear()
        self.stats_counter.reset()
        self.request_log.clear()
