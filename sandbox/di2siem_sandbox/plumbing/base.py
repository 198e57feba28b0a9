"""A simulator's lifecycle (start/stop/url/context manager), faults and control-API plumbing."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from .faults import Fault, FaultQueue
from .server import RequestHandler, SimServer, SimServer6
from .stats import Stats
from .wire import Request, Response

CONTROL_BODY_LIMIT_BYTES = 512 * 1024 * 1024


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
        self._tls: ssl.SSLContext | None = None
        # keep_records=False (the benchmark): validate and count, keep nothing in memory
        self.keep_records = True
        self.out_path: Path | None = None  # --sink-out: accepted records appended as JSON lines

    def serve_tls(self, certfile: str, keyfile: str) -> BaseSimulator:
        """Answer over HTTPS (call before start), as the real services do: some official
        clients refuse to send a token over plain HTTP (Azure's bearer-token policy)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self._tls = context
        return self

    def record_out(self, records: list[Any]) -> None:
        """Append accepted records to ``out_path`` (one JSON line each), when it is set."""
        if self.out_path is not None and records:
            append_jsonl(self.out_path, records)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> BaseSimulator:
        if self._server is not None:
            return self
        server_class = SimServer6 if ":" in self.host else SimServer
        server = server_class((self.host, self._requested_port), RequestHandler)
        server.sim = self  # type: ignore[attr-defined]
        if self._tls is not None:  # the handshake happens in the connection's own thread
            server.socket = self._tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
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
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

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


def append_jsonl(path: Path, records: list[Any]) -> None:
    lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    with path.open("a", encoding="utf-8") as out:
        out.write(lines)
        out.flush()
