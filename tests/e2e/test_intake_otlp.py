"""The otlp intake end to end: the collector against the JumpCloud simulator and an OTLP/HTTP
logs receiver of our own (sandbox otlp.py), over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import counts, recent_events
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.otlp import OtlpReceiver
from intake_rigs import IntakeRun

TOKEN = "otlp-secret-3c9e1f7a20b8d5"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver(headers=AUTH) as rx:
        yield rx


class Otlp(IntakeRun):
    secrets = (TOKEN,)

    def __init__(self, tmp: Path, jc: JumpCloudSimulator, rx: OtlpReceiver) -> None:
        super().__init__(tmp, jc)
        self.rx = rx

    def write(self, **siem: Any) -> None:
        self.write_siem(
            {
                "format": "otlp",
                "url": self.rx.url + "/v1/logs",
                "headers": AUTH,
                "batch_size": 40,
                "batch_delay_milliseconds": 0,
                **siem,
            }
        )


@pytest.fixture
def otlp(tmp_path: Path, jcsim: JumpCloudSimulator, receiver: OtlpReceiver) -> Otlp:
    return Otlp(tmp_path, jcsim, receiver)


def test_every_event_is_one_log_record_with_its_time_severity_and_attributes(
    otlp: Otlp, capsys
) -> None:
    events = recent_events(100)
    events[3]["success"] = False
    otlp.jc.add_events(events)
    otlp.write(service_name="di-prod")
    rc, err = otlp.run(capsys)
    assert rc == 0, err
    assert counts(err)["shipped"] == 100
    # a receiver ignores fields of unknown names (the spec): none of ours may be one
    assert otlp.rx.stats.get("unknown_fields", 0) == 0, otlp.rx.last_unknown_fields
    records = otlp.rx.received
    assert [json.loads(r["body"]["stringValue"])["id"] for r in records] == [
        e["id"] for e in events
    ]
    first = records[0]
    assert first["resource"] == [{"key": "service.name", "value": {"stringValue": "di-prod"}}]
    from di2siem.timeutil import parse_ms

    assert first["timeUnixNano"] == f"{parse_ms(events[0]['timestamp'])}000000"
    attributes = {a["key"]: a["value"]["stringValue"] for a in first["attributes"]}
    assert attributes["id"] == events[0]["id"]
    assert attributes["service"] == events[0]["service"]
    assert attributes["event_type"] == events[0]["event_type"]
    assert (records[3]["severityNumber"], records[3]["severityText"]) == (13, "WARN")
    body = json.loads(records[0]["body"]["stringValue"])
    assert "timestamp" not in body and body["jc_timestamp"] == events[0]["timestamp"]
    rc, err = otlp.run(capsys)
    assert rc == 0 and len(otlp.rx.received) == 100  # nothing twice


def test_a_partial_success_is_recorded_not_resent_and_fails_the_run(otlp: Otlp, capsys) -> None:
    events = recent_events(30)
    otlp.jc.add_events(events)
    otlp.rx.reject_containing = events[5]["id"]
    otlp.write(batch_size=10)
    rc, err = otlp.run(capsys)
    assert rc == 1, err
    assert "SIEM rejected 1 log record(s) of a batch" in err
    assert "refused: body matches a rejection rule" in err
    assert len(otlp.rx.received) == 9 and otlp.rx.rejected == 1  # the run stopped after it
    otlp.rx.reject_containing = None
    rc, err = otlp.run(capsys)
    assert rc == 0, err
    shipped = [json.loads(r["body"]["stringValue"])["id"] for r in otlp.rx.received]
    assert shipped == [e["id"] for e in events if e["id"] != events[5]["id"]]


def test_retryable_answers_are_retried_and_final_ones_are_not(otlp: Otlp, capsys) -> None:
    otlp.jc.add_events(recent_events(20))
    otlp.rx.inject_fault(status=500, count=1, path="/v1/logs")
    otlp.write()
    rc, err = otlp.run(capsys)
    assert rc == 1 and "SIEM answered 500: not retried (OTLP)" in err
    assert otlp.rx.stats["by_status"] == {"500": 1}  # asked once
    otlp.rx.inject_fault(status=503, count=1, retry_after=0, path="/v1/logs")
    otlp.rx.inject_fault(status=429, count=1, retry_after=0, path="/v1/logs")
    rc, err = otlp.run(capsys)
    assert rc == 0, err
    assert counts(err)["retries"] == 2 and len(otlp.rx.received) == 20


def test_a_413_splits_the_batch(otlp: Otlp, capsys) -> None:
    otlp.jc.add_events(recent_events(40))
    otlp.rx.max_body_bytes = otlp.rx.api_body_limit = 20_000
    otlp.write(batch_size=40)
    rc, err = otlp.run(capsys)
    assert rc == 0, err
    assert len(otlp.rx.received) == 40 and otlp.rx.stats["by_status"].get("413", 0) >= 1


def test_check_proves_the_receiver_and_names_the_headers_when_refused(otlp: Otlp, capsys) -> None:
    otlp.write()
    rc, out = otlp.run(capsys, command="check")
    assert rc == 0, out
    assert otlp.rx.received == []
    otlp.write(headers={"Authorization": "Bearer otlp-wrong-token-000"})
    rc, out = otlp.run(capsys, command="check")
    assert rc != 0 and "check siem.headers.Authorization" in out
