"""An OpenTelemetry OTLP/HTTP logs receiver (JSON encoding) on loopback.

Faithful to opentelemetry-proto docs/specification.md as shared/reference/intakes.md
summarises it: POST /v1/logs, ``Content-Type: application/json`` (415 otherwise), an
ExportLogsServiceRequest with lowerCamelCase keys, 64-bit integers as decimal strings, enums
as integers; 200 ``{}`` on success; a body over ``max_body_bytes`` (after decompression: gzip
is allowed) is 413; a malformed request is 400. ``throttle(count, status, retry_after)``: the
next requests answer 429/502/503/504 with Retry-After and keep nothing. Optional credentials:
``headers`` that every request must carry (401 without them).
``reject_containing``: log records whose body holds that text are refused for good, answered
with a 200 whose ``partialSuccess`` names their count (the protocol's partial success).
Fields of unknown names are ignored as the spec requires ("OTLP/JSON receivers MUST ignore
message fields with unknown names"), counted in the stats (``unknown_fields``);
``strict_fields`` refuses them (400) instead.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from .plumbing.base import BaseSimulator
from .plumbing.wire import Request, Response

LOGS_PATH = "/v1/logs"
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
VALUE_KINDS = frozenset(
    (
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
    )
)
RECORD_KEYS = frozenset(
    (
        "timeUnixNano",
        "observedTimeUnixNano",
        "severityNumber",
        "severityText",
        "body",
        "attributes",
        "droppedAttributesCount",
        "flags",
        "traceId",
        "spanId",
        "eventName",
    )
)


class Invalid(ValueError):
    """A 400 answer."""


def _check_uint64(where: str, value: Any) -> None:
    if isinstance(value, str) and value.isdigit() and int(value) < 2**64:
        return
    if type(value) is int and 0 <= value < 2**64:
        return
    raise Invalid(f"{where}: must be an unsigned 64-bit integer (a decimal string in JSON)")


def _check_value(where: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) != 1 or not set(value) <= VALUE_KINDS:
        raise Invalid(f"{where}: must be an AnyValue with exactly one of {sorted(VALUE_KINDS)}")
    if "stringValue" in value and not isinstance(value["stringValue"], str):
        raise Invalid(f"{where}.stringValue: must be a string")


def _check_attributes(where: str, attributes: Any) -> None:
    if not isinstance(attributes, list):
        raise Invalid(f"{where}: must be an array of key/value pairs")
    for index, pair in enumerate(attributes):
        at = f"{where}[{index}]"
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str):
            raise Invalid(f"{at}: must be an object with a string key")
        _check_value(f"{at}.value", pair.get("value"))


def _unknown(where: str, names: set[str], seen: list[str] | None) -> None:
    """Fields of no known name: noted in ``seen`` (the spec: ignored, as if absent), or,
    with no ``seen`` (``strict_fields``), refused."""
    if not names:
        return
    if seen is None:
        raise Invalid(f"{where}: unknown field(s) {sorted(names)}")
    seen.extend(f"{where}.{name}" for name in sorted(names))


def _check_record(where: str, record: Any, unknown: list[str] | None) -> None:
    if not isinstance(record, dict):
        raise Invalid(f"{where}: must be an object")
    _unknown(where, set(record) - RECORD_KEYS, unknown)
    for key in ("timeUnixNano", "observedTimeUnixNano"):
        if key in record:
            _check_uint64(f"{where}.{key}", record[key])
    number = record.get("severityNumber", 0)
    if type(number) is not int or not 0 <= number <= 24:
        raise Invalid(f"{where}.severityNumber: must be an integer 0..24")
    if "severityText" in record and not isinstance(record["severityText"], str):
        raise Invalid(f"{where}.severityText: must be a string")
    if "body" in record:
        _check_value(f"{where}.body", record["body"])
    _check_attributes(f"{where}.attributes", record.get("attributes", []))


def records_of(body: Any, unknown: list[str] | None = None) -> list[dict[str, Any]]:
    """The log records of an ExportLogsServiceRequest, each with its resource's attributes
    under ``resource``; raises Invalid naming the first problem. Fields of unknown names are
    listed in ``unknown`` and otherwise ignored, or refused when ``unknown`` is None."""
    if not isinstance(body, dict):
        raise Invalid('body must be an ExportLogsServiceRequest: {"resourceLogs": [...]}')
    _unknown("(request)", set(body) - {"resourceLogs"}, unknown)
    out = []
    for r, resource_logs in enumerate(body.get("resourceLogs", [])):
        where = f"resourceLogs[{r}]"
        if not isinstance(resource_logs, dict):
            raise Invalid(f"{where}: must be an object")
        resource = resource_logs.get("resource", {})
        attributes = resource.get("attributes", []) if isinstance(resource, dict) else None
        _check_attributes(f"{where}.resource.attributes", attributes)
        for s, scope_logs in enumerate(resource_logs.get("scopeLogs", [])):
            at = f"{where}.scopeLogs[{s}]"
            if not isinstance(scope_logs, dict):
                raise Invalid(f"{at}: must be an object")
            for i, record in enumerate(scope_logs.get("logRecords", [])):
                _check_record(f"{at}.logRecords[{i}]", record, unknown)
                known = {k: v for k, v in record.items() if k in RECORD_KEYS}
                out.append({**known, "resource": attributes})
    return out


def body_text(record: dict[str, Any]) -> str | None:
    body = record.get("body")
    return body.get("stringValue") if isinstance(body, dict) else None


class OtlpReceiver(BaseSimulator):
    """OTLP/HTTP logs on ``url`` + /v1/logs."""

    name = "otlp"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        headers: dict[str, str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        reject_containing: str | None = None,
    ) -> None:
        super().__init__(host, port)
        self.required_headers = dict(headers or {})
        self.max_body_bytes = self.api_body_limit = max_body_bytes
        self.reject_containing = reject_containing
        # The spec: receivers MUST ignore fields of unknown names. They are ignored and
        # counted (stats unknown_fields, last_unknown_fields), so a test can still catch a
        # misspelt field of ours; strict_fields answers 400 instead.
        self.strict_fields = False
        self.last_unknown_fields: list[str] = []
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # accepted log records, in order
        self.rejected = 0
        self.throttled, self.throttle_status, self.throttle_retry_after = 0, 503, 1

    def throttle(self, count: int, status: int = 503, retry_after: int = 1) -> None:
        self.throttled, self.throttle_status = count, status
        self.throttle_retry_after = retry_after

    def __enter__(self) -> OtlpReceiver:
        return self.start()  # type: ignore[return-value]

    def events(self) -> list[Any]:
        """The events the accepted records carry (their bodies, decoded)."""
        with self._lock:
            return [json.loads(body_text(r) or "null") for r in self.received]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.received.clear()
            self.rejected = 0

    def handle_api(self, request: Request) -> Response:
        if request.path != LOGS_PATH:
            return Response.message(404, f"Not Found: {request.path}")
        if request.method != "POST":
            return Response.message(405, f"Method Not Allowed: use POST {LOGS_PATH}")
        for name, value in self.required_headers.items():
            if request.header(name) != value:
                return Response.message(401, f"Unauthorized: missing or wrong {name} header")
        if request.oversize is not None or len(request.body) > self.max_body_bytes:
            return Response.message(413, f"request body over {self.max_body_bytes} bytes")
        with self._lock:
            throttled = self.throttled > 0
            self.throttled -= throttled
        if throttled:
            retry_after = {"Retry-After": str(self.throttle_retry_after)}
            return Response.json(
                self.throttle_status, {"code": 14, "message": "unavailable"}, retry_after
            )
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return Response.message(415, f"Unsupported Media Type: {content_type!r}")
        unknown: list[str] | None = None if self.strict_fields else []
        try:
            records = records_of(request.json(), unknown)
        except ValueError as exc:
            return Response.json(400, {"code": 3, "message": str(exc)})
        if unknown:
            self.last_unknown_fields = unknown[:20]
            self.stats_counter.incr("unknown_fields", len(unknown))
        return self._accept(records)

    def _accept(self, records: list[dict[str, Any]]) -> Response:
        needle = self.reject_containing
        kept = [r for r in records if not needle or needle not in (body_text(r) or "")]
        refused = len(records) - len(kept)
        with self._lock:
            if self.keep_records:
                self.received.extend(kept)
            self.record_out(kept)
            self.rejected += refused
        self.stats_counter.incr("accepted_records", len(kept))
        if not refused:
            return Response.json(200, {})
        partial = {
            "rejectedLogRecords": str(refused),
            "errorMessage": f"{refused} log record(s) refused: body matches a rejection rule",
        }
        return Response.json(200, {"partialSuccess": partial})
