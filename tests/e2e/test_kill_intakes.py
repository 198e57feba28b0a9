"""The kill -9 loop against each intake's simulator: the installed console script is killed at
random instants (seeded) while it ships, a few times, then runs to completion. Every event
arrives, and the copies stay within the intake's promise: none in the Elasticsearch index,
at most ``max_unacknowledged_batches`` batches per kill for splunk_hec with ack, at most the
batch in flight per kill for the others. Each simulator is slowed where a kill hurts most:
after it kept a batch and before its answer (or acknowledgement) arrives."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, console_run, kill_at_random, legacy_config, recent_events
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.elasticsearch import ElasticsearchSim
from di2siem_sandbox.otlp import OtlpReceiver
from di2siem_sandbox.sentinel import SentinelSimulator
from di2siem_sandbox.splunk_hec import SplunkHecSimulator
from di2siem_sandbox.syslog import SyslogReceiver
from intake_rigs import (
    AZ_SECRET,
    ES_KEY,
    HEC_TOKEN,
    OTLP_TOKEN,
    assert_no_intake_secrets,
    siem_section,
)

EVENTS = 300
BATCH = 20
ROUNDS = 3
UNACKNOWLEDGED = 2


def kill_loop(
    tmp: Path, jc: JumpCloudSimulator, siem: dict[str, Any], received: Callable[[], int]
) -> int:
    """ROUNDS killed runs then one to completion (exit 0, no secret in its output); how many
    runs were killed mid-flight."""
    path = tmp / "config.json"
    cfg = {**legacy_config(jc.url, "http://127.0.0.1:9"), **FAST, "state_dir": str(tmp / "state")}
    cfg["siem"] = siem
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return kill_at_random(path, rounds=ROUNDS, seed=17, low=0.05, high=0.3, progress=received)


def finish(tmp: Path) -> None:
    result = console_run(tmp / "config.json")
    assert result.returncode == 0, result.stderr
    assert_no_intake_secrets(result.stdout + result.stderr)


def within_bound(ids: list[str], events: list[dict], kills: int, per_kill: int) -> None:
    copies = Counter(ids)
    assert set(copies) == {e["id"] for e in events}, "an event was lost"
    doubled = sum(copies.values()) - len(copies)
    assert kills >= 2, "the loop really killed runs mid-flight"
    assert doubled <= kills * per_kill, f"{doubled} copies after {kills} kills"
    print(f"kill loop: kills={kills} copies={doubled} allowed={kills * per_kill}")


@pytest.fixture
def events(jcsim: JumpCloudSimulator) -> list[dict]:
    made = recent_events(EVENTS, seed=23)
    jcsim.add_events(made)
    return made


def test_elasticsearch_keeps_exactly_one_copy(tmp_path, jcsim, events) -> None:
    with ElasticsearchSim(api_key=ES_KEY) as es:
        es.answer_delay_s = 0.08  # indexed, then answered: a kill lands in between
        siem = siem_section("elasticsearch", es.url, batch=BATCH)
        kills = kill_loop(tmp_path, jcsim, siem, lambda: len(es.attempts))
        es.answer_delay_s = 0
        finish(tmp_path)
        # by the events' own ids: a resend under another _id would show as a second copy
        within_bound([doc["id"] for doc in es.docs()], events, kills, per_kill=0)
        assert es.stats["items_conflicts"] > 0, "no kill landed between indexing and answer"


def test_splunk_hec_with_ack_resends_at_most_the_unacknowledged_batches(
    tmp_path, jcsim, events
) -> None:
    with SplunkHecSimulator(token=HEC_TOKEN, ack=True) as hec:
        hec.ack_delay_s = 0.15  # every batch waits for its ack: a kill lands while they do
        siem = siem_section("splunk_hec", hec.url, batch=BATCH)
        siem["max_unacknowledged_batches"] = UNACKNOWLEDGED
        # A kill between HEC's "true" (reported once, then forgotten) and the ledger's note of
        # it leaves a batch no later run can confirm: it is sent again after the ack timeout,
        # short here so that the finishing run gets there within its budget.
        siem["ack_timeout_seconds"] = 2
        kills = kill_loop(tmp_path, jcsim, siem, lambda: len(hec.received))
        hec.ack_delay_s = 0
        finish(tmp_path)
        ids = [e["id"] for e in hec.events()]
        within_bound(ids, events, kills, per_kill=UNACKNOWLEDGED * BATCH)
        ledger = tmp_path / "state" / "splunk-hec-acks.json"
        assert not ledger.exists() or json.loads(ledger.read_text())["batches"] == []


def test_sentinel_resends_at_most_the_batch_in_flight(tmp_path, jcsim, events) -> None:
    with SentinelSimulator(client_secret=AZ_SECRET) as az:
        az.stall(10**6, 0.08)  # rows kept, then the 204 comes late: a kill lands in between
        siem = siem_section("sentinel", az.url, authority=az.url, batch=BATCH)
        kills = kill_loop(tmp_path, jcsim, siem, lambda: len(az.rows))
        az.stall(0, 0)
        finish(tmp_path)
        within_bound([e["id"] for e in az.events()], events, kills, per_kill=BATCH)


def test_otlp_resends_at_most_the_batch_in_flight(tmp_path, jcsim, events) -> None:
    with OtlpReceiver(headers={"Authorization": f"Bearer {OTLP_TOKEN}"}) as rx:
        rx.inject_fault(None, count=-1, delay_s=0.08)  # every export takes a while
        siem = siem_section("otlp", rx.url, batch=BATCH)
        kills = kill_loop(tmp_path, jcsim, siem, lambda: len(rx.received))
        rx.clear_faults()
        finish(tmp_path)
        within_bound([e["id"] for e in rx.events()], events, kills, per_kill=BATCH)


def test_syslog_resends_at_most_the_batch_in_flight(tmp_path, jcsim, events) -> None:
    with SyslogReceiver(rcvbuf=4096) as rx:
        rx.read_delay_s = 0.01  # a slow reader: each batch takes a few reads to be acknowledged
        siem = {"format": "syslog", "url": rx.url, "batch_size": BATCH,
                "batch_delay_milliseconds": 0, "hostname": "di2siem-kill"}  # fmt: skip
        kills = kill_loop(tmp_path, jcsim, siem, lambda: len(rx.received))
        rx.read_delay_s = 0
        finish(tmp_path)
        assert rx.errors == [] or all("connection closed inside a frame" in e for e in rx.errors)
        ids = [json.loads(m)["id"] for m in rx.messages()]
        within_bound(ids, events, kills, per_kill=BATCH)
