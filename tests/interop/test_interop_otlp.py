"""Every request body the otlp intake sends parses with the official protobuf definitions
(opentelemetry-proto's ExportLogsServiceRequest, through protobuf's JSON mapping, unknown
fields refused), says in lowerCamelCase exactly what the JSON mapping says back, and carries
what we meant: each event's time, severity, body and attributes. The bodies are captured at
our OTLP receiver (sandbox otlp.py) as the collector sent them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, assert_no_secrets, counts, legacy_config, recent_events
from di2siem.cli import main
from di2siem.intakes.severity import auto_severity
from di2siem.timeutil import parse_ms
from di2siem_sandbox.otlp import LOGS_PATH, OtlpReceiver
from di2siem_sandbox.plumbing.wire import Request, Response
from interop_support import official

# the event's own severity 1..6 -> OTLP's severity text; its number is the official enum's
SEVERITY_TEXT = {1: "DEBUG", 2: "TRACE", 3: "INFO", 4: "WARN", 5: "ERROR", 6: "FATAL"}


class CapturingReceiver(OtlpReceiver):
    """Our receiver, keeping every request body to /v1/logs as it arrived."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bodies: list[bytes] = []

    def handle_api(self, request: Request) -> Response:
        if request.path == LOGS_PATH and request.oversize is None:  # a 413's body is not kept
            self.bodies.append(request.body)
        return super().handle_api(request)


def without_empty(value: Any) -> Any:
    """VALUE without empty lists and objects (the JSON mapping leaves them out)."""
    if isinstance(value, dict):
        kept = {k: without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [without_empty(v) for v in value]
    return value


def expected_body(event: dict) -> str:
    shaped = {k: v for k, v in event.items() if k != "timestamp"}
    shaped["jc_timestamp"] = event["timestamp"]
    return json.dumps(shaped, separators=(",", ":"), ensure_ascii=False)


def test_every_otlp_body_is_an_export_logs_service_request(tmp_path: Path, jcsim, capsys) -> None:
    json_format = official("google.protobuf.json_format", capsys)
    service = official("opentelemetry.proto.collector.logs.v1.logs_service_pb2", capsys)
    logs = official("opentelemetry.proto.logs.v1.logs_pb2", capsys)
    events = recent_events(120)
    events[3]["success"] = False
    events[5]["severity"] = "High"
    events[6]["severity"] = "Critical"
    events[7]["event_type"] = 'ünïcode "quoted" \\ event'
    events[8]["organization"] = "5f1b0c2e8d3a4b0012345678"
    jcsim.add_events(events)
    with CapturingReceiver(max_body_bytes=40_000) as rx:  # 413s split the batches
        cfg = legacy_config(jcsim.url, rx.url)
        cfg["siem"] = {
            "format": "otlp",
            "url": rx.url + LOGS_PATH,
            "service_name": "di-interop",
            "batch_size": 60,
            "batch_delay_milliseconds": 0,
        }
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**cfg, **FAST, "state_dir": str(tmp_path / "state")}))
        os.chmod(path, 0o600)
        for command in ("check", "run"):
            capsys.readouterr()
            rc = main([command, "--config", str(path)])
            out, err = capsys.readouterr()
            assert_no_secrets(out, err)
            assert rc == 0, out + err
        assert counts(err)["shipped"] == 120
        assert rx.stats["by_status"].get("413", 0) >= 1
        bodies = rx.bodies
    assert len(bodies) >= 3  # the check's empty export, and batches
    records = []
    for body in bodies:
        request = json_format.Parse(
            body.decode("utf-8"), service.ExportLogsServiceRequest(), ignore_unknown_fields=False
        )
        mapped = json_format.MessageToDict(request, use_integers_for_enums=True)
        assert mapped == without_empty(json.loads(body))  # lowerCamelCase, 64-bit as strings
        for resource_logs in request.resource_logs:
            resource = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
            assert resource == {"service.name": "di-interop"}
            for scope_logs in resource_logs.scope_logs:
                assert scope_logs.scope.name == "di2siem"
                records.extend(scope_logs.log_records)
    assert json.loads(bodies[0]) == {"resourceLogs": []}  # the check ships no event
    delivered = {json.loads(record.body.string_value)["id"]: record for record in records}
    assert [json.loads(r.body.string_value)["id"] for r in records] == [e["id"] for e in events]
    for event in events:
        record = delivered[event["id"]]
        assert record.time_unix_nano == parse_ms(event["timestamp"]) * 1_000_000
        assert record.observed_time_unix_nano >= record.time_unix_nano
        text = SEVERITY_TEXT[auto_severity(event, 3)]
        number = logs.SeverityNumber.Value(f"SEVERITY_NUMBER_{text}")
        assert (record.severity_number, record.severity_text) == (number, text)
        assert record.body.WhichOneof("value") == "string_value"
        assert record.body.string_value == expected_body(event)
        attributes = {a.key: a.value.string_value for a in record.attributes}
        wanted = {
            k: event[k] for k in ("id", "service", "event_type", "organization") if k in event
        }
        assert attributes == wanted
    assert delivered[events[5]["id"]].severity_number == 17  # High: ERROR
    assert delivered[events[6]["id"]].severity_number == 21  # Critical: FATAL
    assert delivered[events[3]["id"]].severity_number == 13  # failed: WARN


def test_the_official_definitions_refuse_what_they_do_not_define(capsys) -> None:
    """The control: Parse is strict here, so the test above can fail."""
    json_format = official("google.protobuf.json_format", capsys)
    service = official("opentelemetry.proto.collector.logs.v1.logs_service_pb2", capsys)
    bad = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNanos":"1"}]}]}]}'
    with pytest.raises(json_format.ParseError):
        json_format.Parse(bad, service.ExportLogsServiceRequest(), ignore_unknown_fields=False)
