"""The splunk_hec intake end to end: the collector against the JumpCloud simulator and a Splunk
HTTP Event Collector of our own (sandbox splunk_hec.py), over real HTTP on loopback; with
indexer acknowledgement, against acks that are delayed, lost, or outlive the run."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    assert_no_secrets,
    counts,
    kill_if_running,
    recent_events,
    start_run,
)
from di2siem.timeutil import parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.splunk_hec import SplunkHecSimulator
from intake_rigs import IntakeRun

TOKEN = "6f1c2a9e-5b7d-4e3f-9a81-2c4d6e8f0a1b"
LEDGER = "splunk-hec-acks.json"


@pytest.fixture
def hec() -> Iterator[SplunkHecSimulator]:
    with SplunkHecSimulator(token=TOKEN, ack=True) as sim:
        yield sim


class Hec(IntakeRun):
    secrets = (TOKEN,)

    def __init__(self, tmp: Path, jc: JumpCloudSimulator, sim: SplunkHecSimulator) -> None:
        super().__init__(tmp, jc)
        self.sim = sim

    def write(self, budget: float | None = None, **siem: Any) -> None:
        siem = {
            "format": "splunk_hec",
            "url": self.sim.url,
            "token": TOKEN,
            "batch_size": 10,
            "batch_delay_milliseconds": 0,
            "ack": True,
            "ack_poll_seconds": 0.02,
            **siem,
        }
        top = {} if budget is None else {"run_time_budget_seconds": budget}
        self.write_siem(siem, **top)

    def ids(self) -> list[str]:
        return [e["id"] for e in self.sim.events()]

    def ledger(self) -> list[dict]:
        path = self.state_dir / LEDGER
        return json.loads(path.read_text())["batches"] if path.exists() else []


@pytest.fixture
def splunk(tmp_path: Path, jcsim: JumpCloudSimulator, hec: SplunkHecSimulator) -> Hec:
    return Hec(tmp_path, jcsim, hec)


def test_events_arrive_in_the_hec_envelope_once_acknowledged(splunk: Hec, capsys) -> None:
    events = recent_events(35)
    splunk.jc.add_events(events)
    splunk.write(index="main", source="jc", host="di2siem-1")
    rc, err = splunk.run(capsys)
    assert rc == 0, err
    assert counts(err)["shipped"] == 35
    assert splunk.ids() == [e["id"] for e in events]
    first = splunk.sim.received[0]
    ms = parse_ms(events[0]["timestamp"])
    assert first["time"] == pytest.approx(ms / 1000, abs=1e-4)
    assert (first["sourcetype"], first["index"], first["source"], first["host"]) == (
        "jumpcloud:directory_insights",
        "main",
        "jc",
        "di2siem-1",
    )
    assert first["event"]["jc_timestamp"] == events[0]["timestamp"]
    assert splunk.sim.ack_queries >= 4 and splunk.ledger() == []
    rc, err = splunk.run(capsys)
    assert rc == 0 and len(splunk.ids()) == 35  # nothing twice


def test_without_ack_a_200_is_delivered(tmp_path, jcsim, capsys) -> None:
    with SplunkHecSimulator(token=TOKEN) as sim:
        splunk = Hec(tmp_path, jcsim, sim)
        jcsim.add_events(recent_events(25))
        splunk.write(ack=False, url=sim.url + "/services/collector")
        rc, err = splunk.run(capsys)
        assert rc == 0, err
        assert len(splunk.ids()) == 25 and sim.ack_queries == 0 and sim.channels == {}


def test_a_lost_ack_resends_the_batch_after_ack_timeout_seconds(splunk: Hec, capsys) -> None:
    events = recent_events(30)
    splunk.jc.add_events(events)
    splunk.sim.lose_acks = 1  # the first batch is lost: its ack never turns true
    splunk.write(ack_timeout_seconds=0.3)
    started = time.monotonic()
    rc, err = splunk.run(capsys)
    assert rc == 0, err
    assert time.monotonic() - started >= 0.3
    assert splunk.ids() == [e["id"] for e in events]  # resent, in order, once indexed
    assert splunk.ledger() == []


def test_the_cursor_never_passes_a_batch_awaiting_its_ack(splunk: Hec, capsys) -> None:
    """A run ending while its batch waits leaves the ack for the next run, which confirms it
    without sending it again."""
    events = recent_events(10)
    splunk.jc.add_events(events)
    splunk.sim.ack_delay_s = 2.5
    splunk.write(budget=1.0)
    rc, err = splunk.run(capsys)
    assert rc == 0, err
    assert "time budget reached" in err
    waiting = splunk.ledger()
    assert len(waiting) == 1 and len(waiting[0]["keys"]) == 10 and not waiting[0]["acked"]
    assert len(splunk.ids()) == 10  # indexed, but not yet acknowledged
    time.sleep(1.6)
    splunk.write()
    rc, err = splunk.run(capsys)
    assert rc == 0, err
    assert splunk.ids() == [e["id"] for e in events]  # confirmed, not sent again
    assert splunk.ledger() == []
    rc, err = splunk.run(capsys)
    assert rc == 0 and len(splunk.ids()) == 10


def test_kill_9_resends_at_most_max_unacknowledged_batches(splunk: Hec) -> None:
    events = recent_events(60)
    splunk.jc.add_events(events)
    splunk.sim.ack_delay_s = 30  # every batch waits: the kill lands while they do
    splunk.write(max_unacknowledged_batches=2, ack_timeout_seconds=0.5)
    proc = start_run(splunk.path)
    deadline = time.monotonic() + 20
    while len(splunk.ledger()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kill_if_running(proc) == 1
    assert len(splunk.ids()) == 20  # two batches posted, none acknowledged, no third
    assert len(splunk.ledger()) == 2
    splunk.sim.ack_delay_s = 0
    proc = start_run(splunk.path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_no_secrets(out, err)
    assert TOKEN not in out + err
    copies = Counter(splunk.ids())
    assert set(copies) == {e["id"] for e in events}
    assert sum(copies.values()) - len(copies) <= 2 * 10  # at most the two waiting batches


def test_reply_codes_busy_is_retried_bad_event_named_token_named(splunk: Hec, capsys) -> None:
    events = recent_events(10)
    splunk.jc.add_events(events)
    splunk.sim.busy = 1
    splunk.write(index="nope")
    rc, err = splunk.run(capsys)
    assert rc == 1, err
    assert "code 7 (Incorrect index)" in err and f"event {events[0]['id']}, #0" in err
    assert splunk.sim.stats["by_status"].get("503") == 1
    splunk.write(token="0000dead-beef-4000-8000-000000000000")
    rc, err = splunk.run(capsys)
    assert rc == 1 and "403 code 4" in err and "check siem.token" in err
    splunk.write()
    rc, out = splunk.run(capsys, command="check")
    assert rc == 0, out
    assert splunk.sim.received == []
    rc, err = splunk.run(capsys)
    assert rc == 0 and splunk.ids() == [e["id"] for e in events]


def test_a_413_splits_the_batch(splunk: Hec, capsys) -> None:
    splunk.jc.add_events(recent_events(20))
    splunk.sim.max_content_length = splunk.sim.api_body_limit = 4000
    splunk.write(batch_size=20)
    rc, err = splunk.run(capsys)
    assert rc == 0, err
    assert len(splunk.ids()) == 20 and splunk.sim.stats["by_status"].get("413", 0) >= 1
