"""`di2siem run` end to end against the simulators (in-process, real HTTP)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import (
    CX_KEY,
    JC_KEY,
    ORG_A,
    ORG_B,
    Env,
    as_json_line,
    assert_nothing_recorded,
    counts,
    legacy_config,
    shipping_state,
    summary,
)
from di2siem.timeutil import now_ms, parse_ms
from di2siem_sandbox import CoralogixSink, JumpCloudSimulator
from di2siem_sandbox.events import burst_events, deep_event, format_ts, generate_events
from di2siem_sandbox.jumpcloud.store import tiebreaker

MIN = 60_000


def recent(n: int, seed: int = 1, minutes: int = 60, end_ago_ms: int = 1000) -> list[dict]:
    end = now_ms() - end_ago_ms
    return generate_events(n, end - minutes * MIN, end, seed=seed)


def assert_exactly_once(env: Env, expected: list[dict[str, Any]]) -> None:
    ids = env.shipped_ids()
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"{len(dupes)} duplicated ids"
    assert set(ids) == {e["id"] for e in expected}


# -- the legacy drop-in ---------------------------------------------------------------------


def test_legacy_config_drop_in(env: Env, capsys) -> None:
    events = recent(2500)
    env.jc.add_events(events)
    path = env.write()
    before = path.read_bytes()

    rc, _, err = env.run(capsys)
    assert rc == 0, err
    c = counts(err)
    assert c["fetched"] == 2500 and c["shipped"] == 2500 and c["batches"] == 3
    assert c["duplicates"] == 0 and c["skipped"] == 0
    assert_exactly_once(env, events)
    shipped = env.shipped()
    # the API's order: event time, then its opaque tie-breaker (not the id)
    events.sort(key=lambda e: (parse_ms(e["timestamp"]), tiebreaker(e["id"])))
    assert [e["id"] for e in shipped] == [e["id"] for e in events]
    for event, source in zip(shipped[:200], events):
        assert "timestamp" not in event and event["jc_timestamp"] == source["timestamp"]
        assert event["reqHost"] == "jumpcloud" and event["severity"] == "info"
        if "severity" not in source:  # alerts carry their own severity: overwritten in place
            assert list(event)[-4:] == ["jc_timestamp", "reqHost", "customField", "severity"]
    assert summary(err)["cursor"] == events[-1]["timestamp"]

    state = env.state()
    assert state["orgs"]["_default"]["cursor"] == events[-1]["timestamp"]
    assert path.read_bytes() == before, "the collector must never write the config file"

    # second run: only the overlap is re-read, everything in it is a known id
    rc, _, err = env.run(capsys)
    assert rc == 0
    c = counts(err)
    assert c["shipped"] == 0 and c["duplicates"] == c["fetched"] > 0
    assert len(env.shipped()) == 2500


LEGACY_EXAMPLE = (
    '{"initiated_by":{"id":"637212c33f396457d287dad6","type":"admin","email":"admin@example.com"},'
    '"geoip":{"country_code":"IL","timezone":"Asia/Jerusalem","latitude":32.0803,'
    '"continent_code":"AS","region_name":"Tel Aviv","longitude":34.7805,"region_code":"TA"},'
    '"useragent":{"minor":"0","os":"Mac OS X","os_minor":"15","os_major":"10",'
    '"os_version":"10.15.7","version":"108.0.0.0","os_patch":"7","patch":"0",'
    '"os_full":"Mac OS X 10.15.7","major":"108","name":"Chrome","os_name":"Mac OS X",'
    '"device":"Mac"},"mfa":false,"event_type":"admin_login_attempt","success":true,'
    '"service":"directory","organization":"637212c33f396","@version":"1",'
    '"client_ip":"10.20.30.40","id":"639f9ea9ac5d37","jc_timestamp":"2022-12-18T14:57:03.801Z",'
    '"reqHost":"jumpcloud","customField":"jumpcloud","severity":"info"}'
)


def legacy_api_event() -> dict[str, Any]:
    """The API event behind the recipe's example: `timestamp` first, as the API may order it."""
    shipped = json.loads(LEGACY_EXAMPLE)
    event = {"timestamp": shipped.pop("jc_timestamp")}
    for key in ("reqHost", "customField", "severity"):
        shipped.pop(key)
    event.update(shipped)
    return event


@pytest.mark.parametrize("fmt", ["json_lines", "json_array"])
def test_output_is_byte_identical_to_the_legacy_example(env: Env, capsys, fmt: str) -> None:
    env.jc.add_events([legacy_api_event()])
    cfg = legacy_config(env.jc.url, env.cx.url, format=fmt)
    cfg["jumpcloud"]["initial_days_back"] = -3650
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    shipped = env.shipped()
    assert len(shipped) == 1
    assert as_json_line(shipped[0]) == LEGACY_EXAMPLE


def test_deep_event_is_shipped_whole_and_counted(env: Env, capsys) -> None:
    deep = deep_event(depth=12, at=now_ms() - MIN)
    env.jc.add_events([deep, *recent(5)])
    env.write()
    rc, _, err = env.run(capsys)
    assert rc == 0
    assert summary(err).get("deep") == "1"
    assert "deeper than jumpcloud.json_depth" in err
    (shipped,) = [e for e in env.shipped() if e["id"] == deep["id"]]
    assert shipped["resource"] == deep["resource"]  # not flattened to a string


# -- nothing lost ---------------------------------------------------------------------------


def test_pagination_across_many_pages(env: Env, capsys) -> None:
    events = recent(300, seed=3)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url, batch_size=40)
    cfg["jumpcloud"]["page_size"] = 7
    cfg["jumpcloud"]["services"] = ["directory", "sso", "systems", "alerts", "radius", "ldap"]
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    wanted = [
        e for e in events if e["service"] in cfg["jumpcloud"]["services"]
    ]  # the simulator filters by service
    assert_exactly_once(env, wanted)
    bodies = [r["body"] for r in env.jc.requests if r["path"].endswith("/events")]
    assert len(bodies) == len(wanted) // 7 + 1
    assert all(b["limit"] == 7 and b["sort"] == "ASC" for b in bodies)
    assert all(b["service"] == cfg["jumpcloud"]["services"] for b in bodies)  # one request
    assert "search_after" not in bodies[0] and all("search_after" in b for b in bodies[1:])
    assert len({b["start_time"] for b in bodies}) == 1


def test_late_events_inside_the_overlap_are_picked_up(env: Env, capsys) -> None:
    events = recent(200, minutes=20, end_ago_ms=30_000)
    env.jc.add_events(events)
    env.write()
    assert env.run(capsys)[0] == 0
    cursor = parse_ms(env.state()["orgs"]["_default"]["cursor"])

    # indexed late: its time is 2 minutes behind the cursor (inside the 300 s overlap)
    late = generate_events(1, cursor - 2 * MIN, cursor - 2 * MIN, seed=99)
    env.jc.add_events(late)
    rc, _, err = env.run(capsys)
    assert rc == 0
    c = counts(err)
    assert c["shipped"] == 1 and c["duplicates"] > 0
    assert_exactly_once(env, events + late)
    body = env.jc.requests[-1]["body"]
    assert parse_ms(body["start_time"]) == cursor - 300_000


def test_same_millisecond_burst_across_batches_pages_and_a_failure(env: Env, capsys) -> None:
    at = now_ms() - 2 * MIN
    burst = burst_events(500, at)
    before = recent(20, minutes=5, end_ago_ms=3 * MIN)
    env.jc.add_events(before + burst)
    cfg = legacy_config(env.jc.url, env.cx.url, batch_size=37)
    cfg["jumpcloud"]["page_size"] = 64
    env.write(cfg)
    # the sink accepts 4 batches, then fails for good: the run stops inside the burst
    env.cx.inject_fault(None, count=4)
    env.cx.inject_fault(503, count=-1)
    rc, _, err = env.run(capsys)
    assert rc == 1
    assert "SIEM answered 503" in err and "gave up" in err
    assert len(env.shipped()) == 4 * 37
    assert env.state()["orgs"]["_default"]["cursor"] == format_ts(at)

    env.cx.clear_faults()
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert counts(err)["shipped"] == 520 - 4 * 37
    assert_exactly_once(env, before + burst)


# -- faults ---------------------------------------------------------------------------------

FAULTS = {
    "jc-429-retry-after": ("jc", {"status": 429, "count": 2, "retry_after": 1}),
    "jc-503": ("jc", {"status": 503, "count": 2}),
    "jc-timeout": ("jc", {"status": None, "count": 1, "delay_s": 1.5}),
    "jc-malformed-json": ("jc", {"status": 200, "count": 2, "body": "<html>oops"}),
    "jc-not-an-array": ("jc", {"status": 200, "count": 1, "body": {"events": []}}),
    "sink-429-retry-after": ("cx", {"status": 429, "count": 2, "retry_after": 1}),
    "sink-503": ("cx", {"status": 503, "count": 2}),
    "sink-500": ("cx", {"status": 500, "count": 1}),
    "sink-timeout": ("cx", {"status": None, "count": 1, "delay_s": 1.5}),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_transient_faults_are_retried_and_recover(env: Env, capsys, name: str) -> None:
    side, fault = FAULTS[name]
    events = recent(120)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url, batch_size=50, timeout_seconds=0.7)
    cfg["jumpcloud"]["timeout_seconds"] = 0.7
    env.write(cfg, retry_max_delay_seconds=5)
    sim = env.jc if side == "jc" else env.cx
    sim.inject_fault(**fault)
    started = time.monotonic()
    rc, _, err = env.run(capsys)
    elapsed = time.monotonic() - started
    assert rc == 0, err
    c = counts(err)
    assert c["retries"] == fault["count"]
    assert "retrying" in err
    if fault.get("retry_after"):
        assert elapsed >= fault["count"] * fault["retry_after"] * 0.95
    ids = env.shipped_ids()
    assert set(ids) == {e["id"] for e in events}
    # a timed-out POST may still have landed: at most that one batch is doubled
    assert len(ids) - len(set(ids)) <= (50 if name == "sink-timeout" else 0)


def test_malformed_answers_forever_fail_with_exit_1_state_untouched(env: Env, capsys) -> None:
    env.jc.add_events(recent(30))
    env.write()
    assert env.run(capsys)[0] == 0
    state_before = shipping_state(env.state_dir)
    env.jc.add_events(recent(30, seed=9, minutes=1, end_ago_ms=10))
    env.jc.inject_fault(200, count=-1, body="not json at all")
    rc, _, err = env.run(capsys)
    assert rc == 1
    assert "malformed answer" in err and "gave up after 4 attempts" in err
    assert shipping_state(env.state_dir) == state_before
    env.jc.clear_faults()
    rc, _, err = env.run(capsys)
    assert rc == 0 and counts(err)["shipped"] == 30


def test_missing_search_after_header_is_malformed(env: Env, capsys) -> None:
    events = recent(10)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["jumpcloud"]["page_size"] = 2
    env.write(cfg)
    # a full page (2 events) without X-Search_after: cannot continue safely
    env.jc.inject_fault(200, count=1, body=events[:2])
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert "X-Search_after" in err
    assert_exactly_once(env, events)


FAIL_FAST = {
    "jc-401": ("jc", 401, "JumpCloud answered 401: check jumpcloud.api_key"),
    "jc-403": ("jc", 403, "JumpCloud answered 403: check jumpcloud.api_key"),
    "jc-400": ("jc", 400, "JumpCloud answered 400: check jumpcloud.services"),
    "sink-401": ("cx", 401, "SIEM answered 401: check siem.headers.private_key"),
    "sink-403": ("cx", 403, "SIEM answered 403: check siem.headers.private_key"),
    "sink-400": ("cx", 400, "SIEM answered 400: check siem.format"),
}


@pytest.mark.parametrize("name", list(FAIL_FAST))
def test_client_errors_fail_fast_naming_the_key(env: Env, capsys, name: str) -> None:
    side, status, message = FAIL_FAST[name]
    env.jc.add_events(recent(10))
    env.write(retry_base_delay_seconds=5)  # a retry would make this test slow
    (env.jc if side == "jc" else env.cx).inject_fault(status, count=-1)
    started = time.monotonic()
    rc, _, err = env.run(capsys)
    assert rc == 1
    assert message in err
    assert counts(err)["retries"] == 0
    assert time.monotonic() - started < 3
    assert_nothing_recorded(env.state_dir)
    # the run record names the failing side first
    last_error = env.state()["orgs"]["_default"]["ops"]["last_error"]
    assert last_error.startswith("JumpCloud" if side == "jc" else "SIEM") and message in last_error


def test_wrong_keys_name_the_key(env: Env, capsys) -> None:
    env.jc.add_events(recent(5))
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["jumpcloud"]["api_key"] = "jc-wrong-key-000"
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 1 and "check jumpcloud.api_key" in err and "jc-wrong-key-000" not in err

    cfg = legacy_config(env.jc.url, env.cx.url, headers={"private_key": "cx-wrong-key-000"})
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 1 and "check siem.headers.private_key" in err and "cx-wrong-key-000" not in err


# -- batches and sizes ----------------------------------------------------------------------


def test_413_splits_the_batch(tmp_path, jcsim: JumpCloudSimulator, capsys) -> None:
    with CoralogixSink(api_key=CX_KEY, max_body_bytes=20_000) as small:
        env = Env(tmp_path, jcsim, small)
        events = recent(200)
        jcsim.add_events(events)
        env.write(legacy_config(jcsim.url, small.url, batch_size=200, max_batch_bytes=1_000_000))
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert_exactly_once(env, events)
        assert small.stats["by_status"].get("413", 0) >= 1
        assert counts(err)["batches"] > 8  # 200 events * ~1 KB split down under 20 KB


def test_batches_are_capped_by_bytes(env: Env, capsys) -> None:
    events = recent(100)
    env.jc.add_events(events)
    env.write(legacy_config(env.jc.url, env.cx.url, batch_size=1000, max_batch_bytes=10_000))
    rc, _, err = env.run(capsys)
    assert rc == 0
    assert counts(err)["batches"] >= 9
    assert env.cx.stats["by_status"].get("413", 0) == 0
    assert_exactly_once(env, events)


def test_oversize_event_is_reported_and_skipped_once(env: Env, capsys) -> None:
    events = recent(40)
    big = dict(events[20])
    big["id"] = "b" * 24
    big["message"] = "x" * 6000
    env.jc.add_events([*events, big])
    env.write(legacy_config(env.jc.url, env.cx.url, max_batch_bytes=5000))
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert counts(err)["skipped"] == 1
    assert "larger than siem.max_batch_bytes" in err and big["id"] in err
    assert_exactly_once(env, events)
    rc, _, err = env.run(capsys)  # remembered: not re-read, not re-reported
    assert rc == 0 and counts(err)["skipped"] == 0 and big["id"] not in err


def test_event_the_sink_refuses_below_the_cap_stops_the_run_skips_nothing(
    tmp_path, jcsim, capsys
) -> None:
    """Only siem.max_batch_bytes, measured here, makes an event oversize: a 413 for one
    event within it is the SIEM's failure (exit 1, cursor kept), never a silent skip."""
    events = recent(12)
    big = dict(events[5], id="c" * 24, message="y" * 5000)
    jcsim.add_events([*events, big])
    with CoralogixSink(api_key=CX_KEY, max_body_bytes=4000) as small:
        env = Env(tmp_path, jcsim, small)
        env.write(legacy_config(jcsim.url, small.url, batch_size=4))
        rc, _, err = env.run(capsys)
        assert rc == 1, err
        assert "SIEM answered 413" in err and "siem.max_batch_bytes=1500000" in err
        assert counts(err)["skipped"] == 0 and summary(err)["status"] == "failed"
        before = {e["id"] for e in small.events()}
        assert before < {e["id"] for e in events} and big["id"] not in before
    with CoralogixSink(api_key=CX_KEY) as roomy:  # the SIEM is fixed: the next run resumes
        env = Env(tmp_path, jcsim, roomy)
        env.write(legacy_config(jcsim.url, roomy.url, batch_size=4))
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        after = {e["id"] for e in roomy.events()}
        assert not before & after, "an accepted batch was sent again"
        assert before | after == {e["id"] for e in [*events, big]}


# -- state ----------------------------------------------------------------------------------


def test_legacy_state_end_time_seeds_the_first_run(env: Env, capsys) -> None:
    events = recent(50, minutes=30)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["state"] = {"start_time": events[0]["timestamp"], "end_time": events[29]["timestamp"]}
    path = env.write(cfg)
    before = path.read_bytes()
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert "legacy state.end_time" in err
    assert_exactly_once(env, events[30:])
    queries = [r["body"] for r in env.jc.requests if r["body"]["limit"] != 1]  # not the probe
    assert queries[0]["start_time"] == format_ts(parse_ms(events[29]["timestamp"]) + 1)
    assert path.read_bytes() == before
    # later runs go by state.json, not by the legacy value
    rc, _, err = env.run(capsys)
    assert rc == 0 and counts(err)["shipped"] == 0


def test_first_empty_run_pins_the_window(env: Env, capsys) -> None:
    env.write()
    rc, _, err = env.run(capsys)
    assert rc == 0 and counts(err)["fetched"] == 0
    first_start = env.jc.requests[-1]["body"]["start_time"]
    assert env.state()["orgs"]["_default"]["floor"] is not None
    rc, _, err = env.run(capsys)
    assert env.jc.requests[-1]["body"]["start_time"] == first_start


def test_start_time_is_never_in_the_future(env: Env, capsys) -> None:
    env.write()
    env.state_dir.mkdir()
    future = format_ts(now_ms() + 86_400_000)
    env.legacy_state_file.write_text(
        json.dumps({"version": 1, "orgs": {"_default": {"cursor": future, "recent_ids": {}}}})
    )
    rc, _, err = env.run(capsys)
    # migrated as it is, then never "fixed" by jumping to now (that would skip the events
    # between the org's real position and now): the org fails, naming the cursor and the fix
    assert rc == 1, err
    assert f"state of org _default: cursor {future} is ahead of JumpCloud's clock" in err
    assert "di2siem state import --force" in err
    assert parse_ms(env.jc.requests[-1]["body"]["start_time"]) <= now_ms()
    assert [r["body"]["limit"] for r in env.jc.requests] == [1]  # the clock probe, no window
    assert env.state()["orgs"]["_default"]["cursor"] == future


@pytest.mark.parametrize("layout", ["per_org", "legacy"])
def test_corrupt_state_file_fails_without_touching_it(env: Env, capsys, layout: str) -> None:
    env.write()
    path = env.state_file if layout == "per_org" else env.legacy_state_file
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    rc, _, err = env.run(capsys)
    assert rc == 1 and "state file unusable" in err and str(path) in err
    assert path.read_text() == "{not json"


# -- MSP, Coralogix, lock, budget -----------------------------------------------------------


@pytest.fixture
def msp() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=[ORG_A, ORG_B]) as sim:
        yield sim


def test_msp_two_orgs_two_cursors(tmp_path, msp: JumpCloudSimulator, sink, capsys) -> None:
    env = Env(tmp_path, msp, sink)
    end = now_ms() - 1000
    a = generate_events(120, end - 30 * MIN, end - 5 * MIN, seed=1, org=ORG_A)
    b = generate_events(80, end - 30 * MIN, end, seed=2, org=ORG_B)
    msp.add_events(a, org=ORG_A)
    msp.add_events(b, org=ORG_B)
    cfg = legacy_config(msp.url, sink.url)
    cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    lines = [line for line in err.splitlines() if "run summary" in line]
    assert len(lines) == 2 and {ORG_A, ORG_B} == {summary(line)["org"] for line in lines}
    assert_exactly_once(env, a + b)
    orgs = env.state()["orgs"]
    assert orgs[ORG_A]["cursor"] == a[-1]["timestamp"]
    assert orgs[ORG_B]["cursor"] == b[-1]["timestamp"]
    # new orgs share their first query: every request names its orgs (x-org-id lines)
    assert {o for r in msp.requests for o in r["org"].split(",")} == {ORG_A, ORG_B}


def test_msp_budget_takes_turns_between_orgs(
    tmp_path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    """A backlog of org A larger than one run's budget does not starve org B."""
    env = Env(tmp_path, msp, sink)
    end = now_ms() - 1000
    a = generate_events(400, end - 60 * MIN, end - 5 * MIN, seed=1, org=ORG_A)
    b = generate_events(40, end - 60 * MIN, end, seed=2, org=ORG_B)
    msp.add_events(a, org=ORG_A)
    msp.add_events(b, org=ORG_B)
    cfg = legacy_config(msp.url, sink.url, batch_size=10)
    cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
    cfg["jumpcloud"]["shared_query_max_orgs"] = 1  # the turns of orgs on their own streams
    env.write(cfg, run_time_budget_seconds=1, parallel_orgs=1)
    sink.inject_fault(None, count=-1, delay_s=0.1)  # slow sink: A alone uses up the budget

    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert "remaining orgs wait for the next run" in err
    assert env.state()["orgs"][ORG_A]["cursor"] is not None
    assert not any(r["record"]["organization"] == ORG_B for r in sink.received)

    rc, _, err = env.run(capsys)
    assert rc == 0, err
    first = next(line for line in err.splitlines() if "run summary" in line)
    assert f"org={ORG_B}" in first  # B was served first this time
    assert any(r["record"]["organization"] == ORG_B for r in sink.received)

    sink.clear_faults()
    env.write(cfg, run_time_budget_seconds=60, parallel_orgs=1)
    assert env.run(capsys)[0] == 0
    assert_exactly_once(env, a + b)


def test_coralogix_singles_format(env: Env, capsys) -> None:
    events = recent(30)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["siem"] = {
        "format": "coralogix",
        "url": env.cx.url + "/logs/v1/singles",
        "api_key": CX_KEY,
        "application_name": "jc-app",
        "subsystem_name": "jc-sub",
        "severity": "warning",
        "batch_delay_milliseconds": 0,
    }
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    received = env.cx.received
    assert len(received) == 30
    for record, event in zip(received, events):
        assert record["endpoint"] == "singles"
        entry = record["record"]
        assert entry["applicationName"] == "jc-app" and entry["subsystemName"] == "jc-sub"
        assert entry["severity"] == 4
        assert entry["timestamp"] == parse_ms(event["timestamp"])
        assert entry["text"]["id"] == event["id"]
        assert entry["text"]["jc_timestamp"] == event["timestamp"]


def test_coralogix_wrong_key_names_siem_api_key(env: Env, capsys) -> None:
    env.jc.add_events(recent(3))
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["siem"] = {"format": "coralogix", "url": env.cx.url + "/logs/v1/singles"}
    cfg["siem"]["api_key"] = "cx-wrong-key-111"
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 1 and "SIEM answered 401: check siem.api_key" in err
    assert "cx-wrong-key-111" not in err


def test_lock_held_exits_0_without_doing_anything(env: Env, capsys) -> None:
    env.jc.add_events(recent(5))
    env.write()
    env.state_dir.mkdir()
    with open(env.state_dir / "di2siem.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        rc, _, err = env.run(capsys)
    assert rc == 0 and "another run holds the lock" in err
    assert env.jc.stats["requests"] == 0 and not env.shipped()
    rc, _, err = env.run(capsys)  # released: the next run works
    assert rc == 0 and counts(err)["shipped"] == 5


def test_time_budget_stops_between_batches_and_resumes(env: Env, capsys) -> None:
    events = recent(200)
    env.jc.add_events(events)
    env.write(legacy_config(env.jc.url, env.cx.url, batch_size=10), run_time_budget_seconds=1)
    env.cx.inject_fault(None, count=-1, delay_s=0.15)  # slow sink
    rc, _, err = env.run(capsys)
    assert rc == 0
    assert "run time budget reached" in err
    first = counts(err)["shipped"]
    assert 0 < first < 200
    # the summary says how far through its window the run got, and the runs still needed
    summary = next(line for line in err.splitlines() if "run summary" in line)
    fields = dict(f.split("=", 1) for f in summary.split() if "=" in f)
    assert 0 < float(fields["percent"]) < 100 and int(fields["runs_left"]) >= 1
    env.cx.clear_faults()
    rc, _, err = env.run(capsys)
    assert rc == 0
    assert_exactly_once(env, events)


def test_progress_lines_while_a_long_run_goes_and_one_at_its_end(
    env: Env, capsys, monkeypatch
) -> None:
    """A turn longer than the progress interval logs `progress` lines (org, shipped so far,
    covered_until, percent, events_per_s), the last one final; a short one logs none."""
    monkeypatch.setenv("DI2SIEM_PROGRESS_SECONDS", "0.4")
    events = recent(150, minutes=600)
    env.jc.add_events(events)
    env.write(legacy_config(env.jc.url, env.cx.url, batch_size=10))
    env.cx.inject_fault(None, count=-1, delay_s=0.1)  # 15 batches: about 1.5 s
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    lines = [line for line in err.splitlines() if " progress " in line]
    assert len(lines) >= 3, err
    rows = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in lines]
    assert all(r["org"] == "_default" and "covered_until" in r for r in rows)
    shipped = [int(r["shipped"]) for r in rows]
    percents = [float(r["percent"]) for r in rows]
    assert shipped == sorted(shipped) and percents == sorted(percents)
    assert rows[-1]["final"] == "yes" and shipped[-1] == 150 and percents[-1] > 99
    assert all(float(r["events_per_s"]) > 0 for r in rows[1:])
    env.jc.add_events(recent(3, seed=9, minutes=1, end_ago_ms=10))
    env.cx.clear_faults()
    rc, _, err = env.run(capsys)
    assert rc == 0 and " progress " not in err


def test_retry_wait_past_the_time_budget_fails_fast_state_untouched(env: Env, capsys) -> None:
    events = recent(20)
    env.jc.add_events(events)
    env.write(
        legacy_config(env.jc.url, env.cx.url),
        run_time_budget_seconds=2,
        retry_max_delay_seconds=60,
    )
    env.jc.inject_fault(429, count=1, retry_after=30, path="/events")
    started = time.monotonic()
    rc, _, err = env.run(capsys)
    assert rc == 1
    assert time.monotonic() - started < 10  # did not sleep the 30 s Retry-After
    assert "run_time_budget_seconds" in err
    assert not env.state_file.exists() or env.state()["orgs"]["_default"]["cursor"] is None
    assert env.cx.received == []
    rc, _, err = env.run(capsys)  # the next run resumes
    assert rc == 0, err
    assert_exactly_once(env, events)


def test_state_dir_defaults_next_to_the_config(env: Env, capsys) -> None:
    env.jc.add_events(recent(3))
    cfg = legacy_config(env.jc.url, env.cx.url)
    env.path.write_text(json.dumps({**cfg, "retry_base_delay_seconds": 0.01}))
    os.chmod(env.path, 0o600)
    assert env.run(capsys)[0] == 0
    state = env.tmp / "di2siem-state"
    org_file = state / "orgs" / "_default.json"
    assert org_file.exists() and (state / "di2siem.lock").exists()
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct((state / "orgs").stat().st_mode & 0o777) == "0o700"
    assert oct(org_file.stat().st_mode & 0o777) == "0o600"
