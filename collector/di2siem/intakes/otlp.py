"""OTLP/HTTP logs in the JSON encoding (opentelemetry-proto docs/specification.md): one
ExportLogsServiceRequest per batch, one logRecord per event.

A record's ``timeUnixNano`` is the event time, ``observedTimeUnixNano`` when di2siem read it,
its severity the event's own (severity.py, mapped onto OTLP's numbers), its body the event in
di2siem's usual shape as a string (the same bytes the other formats ship), and its attributes
the event's id, service, event type and organization. A 200 that reports
``partialSuccess.rejectedLogRecords`` is neither retried (the protocol forbids it) nor taken
silently: the batch is recorded and the run stops with the count and the receiver's message."""

from __future__ import annotations

import json

from .. import __version__
from ..batching import Framing
from ..config import SiemConfig
from ..shaping import encode
from ..timeutil import now_ms
from ..transport.body import body_excerpt
from ..transport.retry import parse_retry_after
from .base import DELIVERED, SPLIT, Intake, Outcome, Verdict, refused
from .severity import auto_severity

INFO = 3
# Coralogix's 1..6 -> (OTLP SeverityNumber, SeverityText)
OTLP_SEVERITY = {
    1: (5, "DEBUG"),
    2: (1, "TRACE"),
    3: (9, "INFO"),
    4: (13, "WARN"),
    5: (17, "ERROR"),
    6: (21, "FATAL"),
}
ATTRIBUTES = ("id", "service", "event_type", "organization")
RETRIED = (429, 502, 503, 504)


def _attribute(key: str, value: str) -> str:
    return '{"key":' + encode(key) + ',"value":{"stringValue":' + encode(value) + "}}"


class LogRecordEnvelope:
    def head(self, event: dict, key: str | None = None) -> str:
        """The record's severity and attributes, from the event as received."""
        number, text = OTLP_SEVERITY[auto_severity(event, INFO)]
        attributes = ",".join(
            _attribute(key, value)
            for key in ATTRIBUTES
            if type(value := event.get(key)) is str and value
        )
        return f'"severityNumber":{number},"severityText":"{text}","attributes":[{attributes}]'

    def wrap(self, text: str, ts_ms: int | None, head: str) -> str:
        observed = f'"observedTimeUnixNano":"{now_ms()}000000",'
        when = f'"timeUnixNano":"{ts_ms}000000",' if ts_ms is not None and ts_ms >= 0 else ""
        return "{" + when + observed + head + ',"body":{"stringValue":' + encode(text) + "}}"


class Otlp(Intake):
    name = "otlp"
    options = ("url", "headers", "service_name")
    envelope = LogRecordEnvelope()

    def __init__(self, cfg: SiemConfig) -> None:
        super().__init__(cfg)
        resource = _attribute("service.name", cfg.options.service_name)
        scope = '{"name":"di2siem","version":' + encode(__version__) + "}"
        head = (
            '{"resourceLogs":[{"resource":{"attributes":['
            + resource
            + ']},"scopeLogs":[{"scope":'
            + scope
            + ',"logRecords":['
        )
        self.framing = Framing(head.encode("utf-8"), b",", b"]}]}]}")

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        headers.update(self.cfg.headers)
        return headers

    def credential_keys(self) -> str:
        keys = [f"siem.headers.{name}" for name, _ in self.cfg.headers]
        return " / ".join(keys) or "siem.headers (the receiver's credentials)"

    def probe_body(self) -> bytes:
        return b'{"resourceLogs":[]}'

    def classify(self, status: int, response) -> Outcome:
        if 200 <= status < 300:
            return self._success(response)
        if status == 413:
            return SPLIT
        if status in RETRIED:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return Outcome(Verdict.RETRY, retry_after, f"SIEM answered {status}")
        return self.refusal(status, response)

    def refusal(self, status: int, response) -> Outcome:
        if status in RETRIED:
            return self.classify(status, response)
        detail = body_excerpt(response)
        suffix = f" ({detail})" if detail else ""
        if status in (401, 403):
            return refused(f"SIEM answered {status}: check {self.credential_keys()}{suffix}")
        if status in (400, 404, 405):
            return refused(
                f"SIEM answered {status}: check siem.url (the OTLP/HTTP logs path, usually "
                f"/v1/logs){suffix}"
            )
        return refused(f"SIEM answered {status}: not retried (OTLP){suffix}")

    def _success(self, response) -> Outcome:
        try:
            answer = json.loads(bytes(response.content) or b"{}")
        except ValueError:
            return DELIVERED  # a 2xx is acceptance; only a partialSuccess says otherwise
        partial = answer.get("partialSuccess") if isinstance(answer, dict) else None
        if not isinstance(partial, dict):
            return DELIVERED
        try:
            rejected = int(partial.get("rejectedLogRecords") or 0)
        except (TypeError, ValueError):
            rejected = 0
        if rejected <= 0:
            return DELIVERED
        message = str(partial.get("errorMessage") or "no message").replace("\n", " ")[:300]
        return Outcome(
            Verdict.PARTIAL,
            refused_count=rejected,
            reason=(
                f"SIEM rejected {rejected} log record(s) of a batch: {message}; OTLP forbids "
                "sending them again, so the batch counts as sent and the run stops here"
            ),
        )
