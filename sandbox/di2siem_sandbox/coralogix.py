"""Coralogix ingestion sink simulator (a real HTTP server on loopback).

Faithful to shared/reference/coralogix-ingest.md: POST /logs/v1/singles and /logs/v1/bulk
(`Authorization: Bearer <key>`, JSON, 2 MB per request) and the legacy POST /logs/datastream
(`private_key` header, JSON Lines, or one JSON array for the legacy json_array format).
Accepted records are kept in order (and optionally appended to a JSON Lines file).
"""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path
from typing import Any, Union

from .plumbing.base import BaseSimulator, append_jsonl
from .plumbing.wire import Request, Response

DEFAULT_API_KEY = "sandbox-coralogix-key"
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024

SINGLES_PATH = "/logs/v1/singles"
BULK_PATH = "/logs/v1/bulk"
DATASTREAM_PATH = "/logs/datastream"

_OPTIONAL_STR_FIELDS = (
    "computerName",
    "category",
    "className",
    "methodName",
    "threadId",
    "hiResTimestamp",
)
_SINGLES_FIELDS = frozenset(
    ("applicationName", "subsystemName", "text", "timestamp", "severity", *_OPTIONAL_STR_FIELDS)
)
# an entry with only these keys needs no per-optional-field checks (the common case)
_SINGLES_CORE_FIELDS = frozenset(
    ("applicationName", "subsystemName", "text", "timestamp", "severity")
)
_BULK_ENTRY_FIELDS = _SINGLES_FIELDS - {"applicationName", "subsystemName", "computerName"}
_BULK_FIELDS = frozenset(("applicationName", "subsystemName", "computerName", "logEntries"))

Record = dict[str, Any]
PathLike = Union[str, Path]


class Invalid(ValueError):
    """A 400 answer."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_required_str(where: str, entry: dict[str, Any], field: str) -> None:
    value = entry.get(field)
    if not isinstance(value, str) or not value:
        raise Invalid(f"{where}: field '{field}' is required and must be a non-empty string")


def _check_log_fields(where: str, entry: dict[str, Any], allowed: frozenset[str]) -> None:
    """Checks shared by singles entries and bulk logEntries."""
    unknown = set(entry) - allowed
    if unknown:
        raise Invalid(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if "text" not in entry or not isinstance(entry["text"], (str, dict)):
        raise Invalid(f"{where}: field 'text' is required and must be a string or an object")
    if "timestamp" in entry and not _is_number(entry["timestamp"]):
        raise Invalid(f"{where}: field 'timestamp' must be a number (epoch milliseconds)")
    if "severity" in entry:
        severity = entry["severity"]
        if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 6:
            raise Invalid(f"{where}: field 'severity' must be an integer from 1 to 6")
    for field in _OPTIONAL_STR_FIELDS:
        if field in entry and not isinstance(entry[field], str):
            raise Invalid(f"{where}: field '{field}' must be a string")


def validate_singles(body: Any) -> list[Record]:
    if not isinstance(body, list):
        raise Invalid("body must be a JSON array of log entries")
    core = _SINGLES_CORE_FIELDS
    for index, entry in enumerate(body):
        # Fast acceptance of the common entry shape (exact JSON types, only core fields);
        # anything else takes the full checks below, which name the problem.
        if type(entry) is dict:
            app = entry.get("applicationName")
            sub = entry.get("subsystemName")
            text = entry.get("text")
            ts = entry.get("timestamp", 0)
            sev = entry.get("severity", 1)
            if (
                type(app) is str
                and app
                and type(sub) is str
                and sub
                and (type(text) is dict or type(text) is str)
                and (type(ts) is int or type(ts) is float)
                and type(sev) is int
                and 1 <= sev <= 6
                and entry.keys() <= core
            ):
                continue
        where = f"entry {index}"
        if not isinstance(entry, dict):
            raise Invalid(f"{where}: must be a JSON object")
        _check_required_str(where, entry, "applicationName")
        _check_required_str(where, entry, "subsystemName")
        _check_log_fields(where, entry, _SINGLES_FIELDS)
    return body


def validate_bulk(body: Any) -> list[Record]:
    """Returns one record per log entry, with the batch's names copied in."""
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object with applicationName, subsystemName, logEntries")
    unknown = set(body) - _BULK_FIELDS
    if unknown:
        raise Invalid(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_BULK_FIELDS)}")
    _check_required_str("body", body, "applicationName")
    _check_required_str("body", body, "subsystemName")
    if "computerName" in body and not isinstance(body["computerName"], str):
        raise Invalid("body: field 'computerName' must be a string")
    entries = body.get("logEntries")
    if not isinstance(entries, list):
        raise Invalid("body: field 'logEntries' is required and must be an array")
    shared = {k: v for k, v in body.items() if k != "logEntries"}
    records = []
    for index, entry in enumerate(entries):
        where = f"logEntries[{index}]"
        if not isinstance(entry, dict):
            raise Invalid(f"{where}: must be a JSON object")
        _check_log_fields(where, entry, _BULK_ENTRY_FIELDS)
        records.append({**shared, **entry})
    return records


def parse_datastream(body: bytes) -> list[Record]:
    """JSON Lines (one object per line) or, for the legacy json_array format, one array."""
    stripped = body.strip()
    if not stripped:
        return []
    if stripped.startswith(b"["):
        try:
            records = json.loads(stripped)
        except ValueError as exc:
            raise Invalid(f"body looks like a JSON array but does not parse: {exc}") from None
        where = "element"
    else:
        lines = [line for line in stripped.split(b"\n") if line.strip()]
        try:
            # One parse for the whole request; per-line parsing only to locate an error.
            records = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            raise Invalid(_first_bad_line(lines)) from None
        where = "line"
    if not isinstance(records, list):
        raise Invalid("body must be JSON Lines or a JSON array of objects")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise Invalid(f"{where} {index + 1}: must be a JSON object")
    return records


def _first_bad_line(lines: list[bytes]) -> str:
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except ValueError as exc:
            return f"line {number}: not a JSON object ({exc}); expected JSON Lines"
    return "body is not JSON Lines: one JSON object per line"


def shipped_event(record: Record) -> Any:
    """The event carried by a received record: the record for datastream, `text` otherwise
    (a string `text` holding a JSON object is decoded)."""
    if record.get("endpoint") == "datastream":
        return record["record"]
    text = record["record"].get("text")
    if isinstance(text, str):
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, dict) else text
    return text


class CoralogixSink(BaseSimulator):
    """Coralogix ingress on `url` (append /logs/v1/singles or /logs/datastream)."""

    name = "coralogix"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        private_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        out_path: PathLike | None = None,
        freeze_gc: bool = False,
        keep_records: bool = True,
    ) -> None:
        super().__init__(host, port)
        self.api_key = api_key
        self.private_key = private_key if private_key is not None else api_key
        self._initial_keys = (self.api_key, self.private_key)
        self.max_body_bytes = max_body_bytes
        self.api_body_limit = max_body_bytes
        self.out_path = Path(out_path) if out_path is not None else None
        # Dedicated processes (the CLI) move stored records out of the cyclic GC's sight:
        # otherwise every full collection walks all of them and requests slow down as the
        # store grows. Not for in-process use: it freezes the caller's objects too.
        self.freeze_gc = freeze_gc
        # keep_records=False (the benchmark): validate and count, keep nothing in memory
        self.keep_records = keep_records
        self._lock = threading.Lock()
        # accepted requests in order: (endpoint, records); wrapped on demand by `received`
        self._chunks: list[tuple[str, list[Record]]] = []
        self._stored = 0

    def __enter__(self) -> CoralogixSink:
        return self.start()  # type: ignore[return-value]

    # -- received records ------------------------------------------------------------------
    @property
    def received(self) -> list[Record]:
        """Accepted records in arrival order: {"endpoint": "singles"|"bulk"|"datastream",
        "record": <singles entry | bulk entry merged with its batch names | datastream event>}.
        """
        with self._lock:
            chunks = list(self._chunks)
        return [
            {"endpoint": endpoint, "record": r} for endpoint, records in chunks for r in records
        ]

    def events(self) -> list[Any]:
        """The shipped events (see `shipped_event`), in arrival order."""
        return [shipped_event(r) for r in self.received]

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._stored = 0

    def reset(self) -> None:
        super().reset()
        self.clear()
        self.api_key, self.private_key = self._initial_keys

    def rotate_keys(self, api_key: str | None = None, private_key: str | None = None) -> None:
        """Accept other keys from now on, as after a key rotation in Coralogix: the old key is
        refused by the real check (401 for the Bearer key, 403 for private_key)."""
        if api_key is not None:
            self.api_key = api_key
        if private_key is not None:
            self.private_key = private_key

    def _accept(self, endpoint: str, records: list[Record], size: int) -> Response:
        with self._lock:
            if self.keep_records and records:
                self._chunks.append((endpoint, records))
                self._stored += len(records)
            if self.out_path is not None and records:
                self._append_out([{"endpoint": endpoint, "record": r} for r in records])
            if self.freeze_gc and self.keep_records:
                gc.freeze()
        self.stats_counter.incr("accepted_records", len(records))
        self.stats_counter.incr("accepted_bytes", size)
        return Response.json(200, {"accepted": len(records)})

    def _append_out(self, wrapped: list[Record]) -> None:
        assert self.out_path is not None
        append_jsonl(self.out_path, wrapped)

    @property
    def stats(self) -> dict[str, Any]:
        data = super().stats
        data.setdefault("accepted_records", 0)
        data.setdefault("accepted_bytes", 0)
        data.setdefault("bytes_received", 0)
        with self._lock:
            data["stored_records"] = self._stored
        return data

    # -- HTTP ------------------------------------------------------------------------------
    def handle_api(self, request: Request) -> Response:
        routes = {
            SINGLES_PATH: self._singles,
            BULK_PATH: self._bulk,
            DATASTREAM_PATH: self._datastream,
        }
        route = routes.get(request.path)
        if route is None:
            return Response.message(404, f"Not Found: {request.path}")
        if request.method != "POST":
            return Response.message(405, f"Method Not Allowed: use POST {request.path}")
        self.stats_counter.incr("bytes_received", request.oversize or len(request.body))
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        if request.oversize is not None:
            return Response.message(
                413,
                f"Request Entity Too Large: {request.oversize} bytes, "
                f"limit {self.max_body_bytes} bytes",
            )
        try:
            return route(request)
        except Invalid as exc:
            return Response.message(400, str(exc))

    def _authenticate(self, request: Request) -> Response | None:
        if request.path == DATASTREAM_PATH:
            key = request.header("private_key")
            if not key:
                return Response.message(401, "Unauthorized: missing private_key header")
            if key != self.private_key:
                return Response.message(403, "Forbidden: invalid private_key")
            return None
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Response.message(401, "Unauthorized: expected Authorization: Bearer <API key>")
        if token.strip() != self.api_key:
            return Response.message(401, "Unauthorized: invalid API key")
        return None

    @staticmethod
    def _require_json(request: Request) -> None:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise Invalid(f"Content-Type must be application/json, got {content_type!r}")

    def _singles(self, request: Request) -> Response:
        self._require_json(request)
        records = validate_singles(self._json(request))
        return self._accept("singles", records, len(request.body))

    def _bulk(self, request: Request) -> Response:
        self._require_json(request)
        records = validate_bulk(self._json(request))
        return self._accept("bulk", records, len(request.body))

    def _datastream(self, request: Request) -> Response:
        records = parse_datastream(request.body)
        return self._accept("datastream", records, len(request.body))

    @staticmethod
    def _json(request: Request) -> Any:
        try:
            return request.json()
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    # -- control ---------------------------------------------------------------------------
    def extra_control(self, request: Request) -> Response:
        if (request.method, request.path) == ("GET", "/_sim/received"):
            return self._control_received(request)
        if (request.method, request.path) == ("POST", "/_sim/keys"):
            return self._control_keys(request)
        return super().extra_control(request)

    def _control_keys(self, request: Request) -> Response:
        """{"api_key": ..., "private_key": ...} (either or both): the keys accepted from now
        on. The answer names what changed, never a key."""
        try:
            data = request.json()
        except ValueError as exc:
            return Response.message(400, str(exc))
        fields = ("api_key", "private_key")
        if not isinstance(data, dict) or not data or set(data) - set(fields):
            return Response.message(400, f"expected an object with {' and/or '.join(fields)}")
        if not all(isinstance(v, str) and v for v in data.values()):
            return Response.message(400, "keys must be non-empty strings")
        self.rotate_keys(data.get("api_key"), data.get("private_key"))
        return Response.json(200, {"rotated": sorted(data)})

    def _control_received(self, request: Request) -> Response:
        try:
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return Response.message(400, "offset must be an integer")
        records = self.received[offset:]
        endpoint = request.query.get("endpoint")
        if endpoint:
            records = [r for r in records if r["endpoint"] == endpoint]
        if request.query.get("events") in ("1", "true"):
            return Response.json(200, [shipped_event(r) for r in records])
        return Response.json(200, records)
