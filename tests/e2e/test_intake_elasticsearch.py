"""The elasticsearch intake end to end: the collector against the JumpCloud simulator and an
Elasticsearch _bulk simulator of our own (sandbox elasticsearch.py), over real HTTP on
loopback. The promise: every event exactly once in the data stream, also after a lost answer
or a kill -9, since a resent ``create`` of the same ``_id`` answers 409."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    counts,
    kill_if_running,
    recent_events,
    start_run,
    summary,
)
from di2siem.timeutil import format_ms, parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.elasticsearch import DEFAULT_DATA_STREAM, ElasticsearchSim
from intake_rigs import IntakeRun

API_KEY = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
PASSWORD = "es-password-7c1d93e5"


@pytest.fixture
def cluster() -> Iterator[ElasticsearchSim]:
    with ElasticsearchSim(api_key=API_KEY, users={"shipper": PASSWORD}) as es:
        yield es


class Es(IntakeRun):
    secrets = (API_KEY, PASSWORD)

    def __init__(self, tmp: Path, jc: JumpCloudSimulator, es: ElasticsearchSim) -> None:
        super().__init__(tmp, jc)
        self.es = es

    def write(self, **siem: Any) -> None:
        self.write_siem(
            {
                "format": "elasticsearch",
                "url": self.es.url,
                "api_key": API_KEY,
                "batch_size": 10,
                "batch_delay_milliseconds": 0,
                **siem,
            }
        )

    def once_each(self, events: list[dict]) -> None:
        """Every event exactly once in the data stream, under its id."""
        assert Counter(self.es.ids()) == Counter(e["id"] for e in events)


@pytest.fixture
def es(tmp_path: Path, jcsim: JumpCloudSimulator, cluster: ElasticsearchSim) -> Es:
    return Es(tmp_path, jcsim, cluster)


def test_every_event_is_created_under_its_id_with_its_time(es: Es, capsys) -> None:
    events = recent_events(30)
    es.jc.add_events(events)
    es.write()
    rc, err = es.run(capsys)
    assert rc == 0, err
    assert counts(err)["shipped"] == 30
    ids = es.es.ids()
    assert ids == [e["id"] for e in events]
    first = es.es.docs()[0]
    assert first["@timestamp"] == format_ms(parse_ms(events[0]["timestamp"]))
    assert first["@timestamp"].endswith("Z") and len(first["@timestamp"]) == 24
    assert first["jc_timestamp"] == events[0]["timestamp"] and first["id"] == events[0]["id"]
    assert es.es.stats["items_created"] == 30
    rc, err = es.run(capsys)
    assert rc == 0 and len(es.es.ids()) == 30  # nothing twice
    es.state_dir = es.state_dir.with_name("forgotten")  # all sent again: the same _ids
    es.write()
    rc, err = es.run(capsys)
    assert rc == 0 and es.es.ids() == ids and es.es.stats["items_conflicts"] == 30


def test_a_bulk_answer_bigger_than_an_error_body_is_read_whole(es: Es, capsys) -> None:
    """1000 items answer ~150 KB (a real cluster: ~250 bytes an item), over the 64 KiB an
    error body is cut to: the whole answer is read, item by item (found by bench.py)."""
    es.jc.add_events(recent_events(1000))
    es.write(batch_size=1000)
    rc, err = es.run(capsys)
    assert rc == 0, err
    assert counts(err)["shipped"] == 1000 and len(es.es.ids()) == 1000


def test_basic_authentication_and_a_data_stream_of_ones_own(es: Es, capsys) -> None:
    es.es.data_streams.add("logs-jumpcloud-acme")
    es.jc.add_events(recent_events(5))
    es.write(api_key=None, username="shipper", password=PASSWORD, data_stream="logs-jumpcloud-acme")
    rc, err = es.run(capsys)
    assert rc == 0, err
    assert len(es.es.ids("logs-jumpcloud-acme")) == 5 and es.es.ids() == []


def test_a_lost_answer_is_resent_and_the_index_keeps_one_copy(es: Es, capsys) -> None:
    events = recent_events(30)
    es.jc.add_events(events)
    es.es.drop_answers = 1  # indexed, then the connection closes without an answer
    es.write()
    rc, err = es.run(capsys)
    assert rc == 0, err
    assert summary(err)["resent"] == "1"
    assert es.es.stats["items_conflicts"] == 10  # the resent batch: all 409
    es.once_each(events)


def test_a_run_that_never_hears_back_is_followed_by_one_that_gets_409s(es: Es, capsys) -> None:
    events = recent_events(20)
    es.jc.add_events(events)
    es.es.drop_answers = -1
    es.write()
    rc, err = es.run(capsys)
    assert rc == 1 and "dropped the connection without answering 3 times" in err
    assert len(es.es.ids()) == 10 and es.es.stats["items_conflicts"] == 20
    es.es.drop_answers = 0
    rc, err = es.run(capsys)
    assert rc == 0, err
    es.once_each(events)


def test_a_kill_9_between_indexing_and_the_answer_costs_no_duplicate(es: Es, capsys) -> None:
    events = recent_events(30)
    es.jc.add_events(events)
    es.es.answer_delay_s = 30  # the first batch is indexed, its answer never comes in time
    es.write()
    proc = start_run(es.path)
    waited = time.monotonic() + 30
    while not es.es.ids() and time.monotonic() < waited:
        time.sleep(0.01)
    assert kill_if_running(proc) == 1
    assert len(es.es.ids()) == 10
    es.es.answer_delay_s = 0
    rc, err = es.run(capsys)
    assert rc == 0, err
    assert es.es.stats["items_conflicts"] >= 10  # resent, answered 409
    es.once_each(events)


def test_a_429_item_is_retried_alone(es: Es, capsys) -> None:
    events = recent_events(10)
    es.jc.add_events(events)
    slow = events[4]["id"]
    es.es.item_answers[slow] = [429, 429]
    es.write()
    rc, err = es.run(capsys)
    assert rc == 0, err
    assert counts(err)["retries"] == 2
    # one batch of 10, then the rejected item alone, twice
    assert es.es.attempts == [e["id"] for e in events] + [slow, slow]
    assert es.es.stats["by_status"] == {"200": 3}
    es.once_each(events)


def test_a_mapping_error_stops_the_run_before_the_event_until_it_is_fixed(es: Es, capsys) -> None:
    events = recent_events(30)
    es.jc.add_events(events)
    bad = events[14]  # the fifth of the second batch
    es.es.refuse_ids.add(bad["id"])
    es.es.item_answers[events[12]["id"]] = [429]  # before it: retried, then recorded
    es.write()
    rc, err = es.run(capsys)
    assert rc == 1, err
    refusal = [line for line in err.splitlines() if f"SIEM refused event {bad['id']}" in line]
    assert len(refusal) == 1 and "mapper_parsing_exception" in refusal[0], err
    assert sorted(es.es.ids()) == sorted(e["id"] for e in events[:20] if e is not bad)
    es.es.attempts.clear()
    es.es.refuse_ids.clear()  # the mapping is fixed
    rc, err = es.run(capsys)
    assert rc == 0, err
    # the cursor stayed before it: it and what follows are sent again, what preceded is not
    assert es.es.attempts == [e["id"] for e in events[14:]]
    es.once_each(events)


def test_request_answers_retried_split_and_refused(es: Es, capsys) -> None:
    events = recent_events(20)
    es.jc.add_events(events)
    es.es.inject_fault(status=429, count=1, retry_after=0, path="/_bulk")
    es.es.inject_fault(status=503, count=1, retry_after=0, path="/_bulk")
    es.es.max_body_bytes = es.es.api_body_limit = 4000
    es.write(batch_size=20)
    rc, err = es.run(capsys)
    assert rc == 0, err
    assert counts(err)["retries"] == 2 and es.es.stats["by_status"].get("413", 0) >= 1
    es.once_each(events)
    es.state_dir = es.state_dir.with_name("another-state")  # the 20 events again
    es.write(api_key=base64.b64encode(b"id:wrong-key-000000").decode())
    rc, err = es.run(capsys)
    assert rc == 1 and "SIEM answered 401: check siem.api_key" in err
    es.write(api_key=None, username="shipper", password="not-the-password")
    rc, err = es.run(capsys)
    assert rc == 1 and "SIEM answered 401: check siem.username/siem.password" in err


def test_check_proves_the_privilege_without_writing(es: Es, capsys) -> None:
    es.write()
    rc, out = es.run(capsys, command="check")
    assert rc == 0, out
    assert es.es.documents == {} and es.es.stats["by_path"].keys() == {
        "/_security/user/_has_privileges"
    }
    es.es.can_create = False
    rc, out = es.run(capsys, command="check")
    assert rc != 0 and f"may not create documents in data stream {DEFAULT_DATA_STREAM}" in out
    es.write(api_key=base64.b64encode(b"id:wrong-key-000000").decode())
    rc, out = es.run(capsys, command="check")
    assert rc != 0 and "check siem.api_key" in out
