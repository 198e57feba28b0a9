"""The simulators behave like the documented APIs, over real HTTP."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import sandbox_process
from di2siem_sandbox import CoralogixSink, JumpCloudSimulator, main
from di2siem_sandbox.events import (
    QUERY_SERVICES,
    burst_events,
    deep_event,
    event_depth,
    format_ts,
    generate_events,
    now_ms,
    parse_ts,
)

JC_KEY = "sandbox-jumpcloud-key"
CX_KEY = "sandbox-coralogix-key"
EVENTS = "/insights/directory/v1/events"
START = "2022-12-18T00:00:00.000Z"
END = "2022-12-19T00:00:00.000Z"
ORG_A = "aaaaaaaaaaaaaaaaaaaaaaaa"
ORG_B = "bbbbbbbbbbbbbbbbbbbbbbbb"


@pytest.fixture
def jc() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator() as sim:
        yield sim


@pytest.fixture
def cx(tmp_path: Path) -> Iterator[CoralogixSink]:
    with CoralogixSink(max_body_bytes=64 * 1024, out_path=tmp_path / "sink.jsonl") as sink:
        yield sink


def query(**overrides: Any) -> dict[str, Any]:
    return {"service": ["all"], "start_time": START, **overrides}


def post_jc(
    sim: JumpCloudSimulator, body: Any, path: str = EVENTS, **headers: str
) -> requests.Response:
    sent = {"x-api-key": JC_KEY, **headers}
    return requests.post(sim.url + path, json=body, headers=sent, timeout=5)


def pull_all(sim: JumpCloudSimulator, limit: int, **overrides: Any) -> list[dict[str, Any]]:
    session, body, events = requests.Session(), query(limit=limit, **overrides), []
    while True:
        response = session.post(sim.url + EVENTS, json=body, headers={"x-api-key": JC_KEY})
        assert response.status_code == 200, response.text
        page = response.json()
        assert int(response.headers["X-Result-Count"]) == len(page)
        assert int(response.headers["X-Limit"]) == limit
        events.extend(page)
        body["search_after"] = json.loads(response.headers["X-Search_after"])
        if len(page) < limit:
            return events


# -- events.py ------------------------------------------------------------------------------


def test_generator_is_deterministic_and_realistic() -> None:
    first = generate_events(300, START, END, seed=7)
    assert first == generate_events(300, START, END, seed=7)
    assert len({e["id"] for e in first}) == 300
    assert all(len(e["id"]) == 24 and int(e["id"], 16) >= 0 for e in first)
    stamps = [parse_ts(e["timestamp"]) for e in first]
    assert stamps == sorted(stamps)
    assert all(parse_ts(START) <= ts <= parse_ts(END) for ts in stamps)
    assert all(e["timestamp"].endswith("Z") and len(e["timestamp"]) in (20, 24) for e in first)
    assert all(e["@version"] == "1" and e["service"] in QUERY_SERVICES for e in first)
    assert {"resource", "changes"} <= {k for e in first for k in e}
    assert all(e["severity"] == "Medium" for e in first if e["service"] == "alerts")


def test_timestamp_helpers_and_depth() -> None:
    assert format_ts(parse_ts("2022-12-18T14:57:03.801Z")) == "2022-12-18T14:57:03.801Z"
    assert parse_ts("2022-12-18T16:57:03.8019+02:00") == parse_ts("2022-12-18T14:57:03.801Z")
    with pytest.raises(ValueError):
        parse_ts("2022-13-18T14:57:03Z")
    assert event_depth(deep_event(depth=12)) > 10
    assert len({e["timestamp"] for e in burst_events(5, START)}) == 1


# -- JumpCloud ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"x-api-key": "wrong"}, 401), ({"x-api-key": "viewer"}, 403)],
)
def test_jumpcloud_auth(headers: dict[str, str], status: int) -> None:
    with JumpCloudSimulator(non_admin_keys=["viewer"]) as sim:
        response = requests.post(sim.url + EVENTS, json=query(), headers=headers, timeout=5)
    assert response.status_code == status
    assert "message" in response.json()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (query(service=["bogus"]), "supported values"),
        (query(service=[]), "service"),
        ({"start_time": START}, "service"),
        (query(start_time="yesterday"), "RFC 3339"),
        ({"service": ["all"]}, "start_time"),
        (query(start_time=format_ts(now_ms() + 3_600_000)), "future"),
        (query(end_time=START), "Start Time not after End Time"),
        (query(search_after="abc"), "search_after"),
    ],
)
def test_jumpcloud_rejects_bad_queries(jc: JumpCloudSimulator, body: Any, needle: str) -> None:
    response = post_jc(jc, body)
    assert response.status_code == 400
    assert needle in response.json()["message"]


def test_pagination_covers_every_event_once_in_order(jc: JumpCloudSimulator) -> None:
    events = generate_events(230, START, END, seed=1)
    burst = burst_events(25, "2022-12-18T12:00:00.000Z", seed=1)
    jc.add_events(events + burst)
    pulled = pull_all(jc, limit=10)
    assert sorted(e["id"] for e in pulled) == sorted(e["id"] for e in events + burst)
    stamps = [parse_ts(e["timestamp"]) for e in pulled]
    assert stamps == sorted(stamps) and len({e["id"] for e in pulled}) == len(pulled)
    assert jc.stats["pages_served"] == 26


def test_headers_sort_desc_and_empty_page(jc: JumpCloudSimulator) -> None:
    jc.add_events(generate_events(20, START, END, seed=2))
    response = post_jc(jc, query(sort="DESC", limit=5))
    page = response.json()
    assert response.headers["X-Sort"] == "DESC"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Request-Id"]
    stamps = [parse_ts(e["timestamp"]) for e in page]
    assert stamps == sorted(stamps, reverse=True)
    last = json.loads(response.headers["X-Search_after"])
    assert last[0] == parse_ts(page[-1]["timestamp"]) and last[1] != page[-1]["id"]
    empty = post_jc(jc, query(start_time="2023-01-01T00:00:00Z"))
    assert empty.json() == [] and empty.headers["X-Search_after"] == "[]"
    assert empty.headers["X-Result-Count"] == "0" and empty.headers["X-Limit"] == "1000"


def test_window_service_filter_count_and_distinct(jc: JumpCloudSimulator) -> None:
    events = generate_events(200, START, END, seed=3)
    jc.add_events(events)
    middle = "2022-12-18T12:00:00.000Z"
    body = query(service=["sso", "systems"], end_time=middle, limit=10000)
    expected = [
        e["id"]
        for e in events
        if e["service"] in ("sso", "systems") and parse_ts(e["timestamp"]) < parse_ts(middle)
    ]
    assert [e["id"] for e in post_jc(jc, body).json()] == expected
    count = post_jc(jc, body, path=EVENTS + "/count").json()
    assert count == {"count": len(expected)}
    distinct = post_jc(jc, query(field="service"), path=EVENTS + "/distinct").json()
    assert sum(b["doc_count"] for b in distinct["buckets"]) == 200


def test_org_scoping() -> None:
    with JumpCloudSimulator(org_ids=[ORG_A, ORG_B]) as sim:
        sim.add_events(generate_events(5, START, END, org=ORG_A))
        sim.add_events(generate_events(7, START, END, org=ORG_B, seed=9))
        missing = post_jc(sim, query())
        assert missing.status_code == 400 and "x-org-id" in missing.json()["message"]
        assert post_jc(sim, query(), **{"x-org-id": "c" * 24}).status_code == 403
        page_b = post_jc(sim, query(), **{"x-org-id": ORG_B}).json()
        assert len(page_b) == 7 and {e["organization"] for e in page_b} == {ORG_B}
        assert len(post_jc(sim, query(), **{"x-org-id": ORG_A}).json()) == 5


def test_late_events_appear_only_once_visible(jc: JumpCloudSimulator) -> None:
    jc.add_events(generate_events(3, START, END, seed=4))
    late = generate_events(2, START, END, seed=5)
    jc.add_events(late, visible_after_s=0.3)
    assert len(post_jc(jc, query()).json()) == 3
    time.sleep(0.35)
    assert {e["id"] for e in late} <= {e["id"] for e in post_jc(jc, query()).json()}


def test_faults_then_recovery(jc: JumpCloudSimulator) -> None:
    jc.inject_fault(429, count=2, retry_after=1)
    first, second = post_jc(jc, query()), post_jc(jc, query())
    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "1"
    assert post_jc(jc, query()).status_code == 200
    jc.inject_fault(200, body="not json")
    assert post_jc(jc, query()).text == "not json"
    requests.post(jc.url + "/_sim/faults", json={"status": 503}, timeout=5)
    assert post_jc(jc, query()).status_code == 503
    jc.inject_fault(None, delay_s=1)
    with pytest.raises(requests.Timeout):
        requests.post(jc.url + EVENTS, json=query(), headers={"x-api-key": JC_KEY}, timeout=0.2)


def test_control_api_adds_events_and_resets(jc: JumpCloudSimulator) -> None:
    added = requests.post(jc.url + "/_sim/events", json={"generate": 50, "days": 1}, timeout=5)
    assert added.json()["added"] == 50
    stats = requests.get(jc.url + "/_sim/stats", timeout=5).json()
    assert sum(stats["events_stored"].values()) == 50
    requests.post(jc.url + "/_sim/reset", timeout=5)
    assert jc.event_count() == 0


# -- Coralogix ------------------------------------------------------------------------------


def entry(**overrides: Any) -> dict[str, Any]:
    return {"applicationName": "jc", "subsystemName": "di", "text": {"id": "1"}, **overrides}


def post_singles(sink: CoralogixSink, body: Any, key: str = CX_KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return requests.post(sink.url + "/logs/v1/singles", json=body, headers=headers, timeout=5)


def test_singles_accepts_and_records(cx: CoralogixSink) -> None:
    assert post_singles(cx, []).status_code == 200
    text_entry = entry(text=json.dumps({"id": "2"}), timestamp=1.5e12, severity=3)
    assert post_singles(cx, [entry(), text_entry]).status_code == 200
    assert cx.events() == [{"id": "1"}, {"id": "2"}]
    assert [r["endpoint"] for r in cx.received] == ["singles", "singles"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"not": "an array"}, "array"),
        ([entry(), {"subsystemName": "di", "text": "x"}], "entry 1: field 'applicationName'"),
        ([entry(text=5)], "'text'"),
        ([entry(severity=7)], "'severity'"),
        ([entry(timestamp="now")], "'timestamp'"),
        ([entry(colour="red")], "unknown field"),
        ([entry(), entry(severity=True)], "entry 1: field 'severity'"),
        ([entry(timestamp=False)], "'timestamp'"),
        ([entry(timestamp=None)], "'timestamp'"),
        ([entry(applicationName="")], "'applicationName'"),
        ([entry(text=None)], "'text'"),
        ([entry(text=[1])], "'text'"),
        ([entry(className=5)], "'className'"),
        ([5], "entry 0: must be a JSON object"),
    ],
)
def test_singles_rejects_bad_entries(cx: CoralogixSink, body: Any, needle: str) -> None:
    response = post_singles(cx, body)
    assert response.status_code == 400
    assert needle in response.json()["message"]
    assert cx.received == []


def test_singles_optional_fields_and_count_only_mode() -> None:
    full = entry(className="c", threadId="t", timestamp=1, severity=6)
    with CoralogixSink(keep_records=False) as sink:
        assert post_singles(sink, [entry(), full]).status_code == 200
        assert post_singles(sink, [entry(severity=0)]).status_code == 400
        assert sink.received == [] and sink.stats["accepted_records"] == 2
        assert sink.stats["stored_records"] == 0


def test_sink_auth_and_size(cx: CoralogixSink) -> None:
    assert post_singles(cx, [], key="wrong").status_code == 401
    assert requests.post(cx.url + "/logs/v1/singles", json=[], timeout=5).status_code == 401
    big = [entry(text="x" * 1000) for _ in range(100)]
    assert post_singles(cx, big).status_code == 413
    assert post_singles(cx, [entry()]).status_code == 200  # connection still usable


def test_sink_key_rotation_refuses_the_old_key_until_restored(cx: CoralogixSink) -> None:
    """POST /_sim/keys: the real auth check refuses the old keys (401 Bearer, 403 private_key);
    the answer never echoes a key; reset restores the started keys."""
    stream = cx.url + "/logs/datastream"
    rotated = requests.post(
        cx.url + "/_sim/keys", json={"api_key": "new-key", "private_key": "new-pk"}, timeout=5
    )
    assert rotated.status_code == 200 and rotated.json() == {"rotated": ["api_key", "private_key"]}
    assert "new-key" not in rotated.text
    refused = post_singles(cx, [entry()])
    assert refused.status_code == 401 and "invalid API key" in refused.json()["message"]
    refused = requests.post(stream, data=b'{"id":"a"}', headers={"private_key": CX_KEY}, timeout=5)
    assert refused.status_code == 403 and "invalid private_key" in refused.json()["message"]
    assert post_singles(cx, [entry()], key="new-key").status_code == 200
    for bad in ({}, {"api_key": ""}, {"other": "x"}, ["new-key"]):
        answer = requests.post(cx.url + "/_sim/keys", json=bad, timeout=5)
        assert answer.status_code == 400, bad
    assert requests.post(cx.url + "/_sim/keys", json={"api_key": CX_KEY}, timeout=5).ok
    assert post_singles(cx, [entry()]).status_code == 200
    assert (
        requests.post(
            stream, data=b'{"id":"a"}', headers={"private_key": CX_KEY}, timeout=5
        ).status_code
        == 403
    )
    cx.reset()
    assert requests.post(stream, data=b'{"id":"a"}', headers={"private_key": CX_KEY}, timeout=5).ok
    assert [r["endpoint"] for r in cx.received] == ["datastream"]


def test_hec_token_rotation_refuses_the_old_token_until_reset() -> None:
    """The HEC simulator's POST /_sim/keys (the Molecule timer scenario's key rotation): the
    old token gets HEC's 403 code 4, the new one works with the same acknowledgement setting,
    the answer never shows a token; reset restores the starting token."""
    from di2siem_sandbox.splunk_hec import SplunkHecSimulator

    old, new = "6f1c2a9e-5b7d-4e3f-9a81-2c4d6e8f0a1b", "rotated-by-a-test"
    channel = {"X-Splunk-Request-Channel": "0b6f3e1a-8c2d-4f5e-9a7b-1c3d5e7f9a2b"}

    def post(sim: SplunkHecSimulator, token: str) -> requests.Response:
        headers = {"Authorization": f"Splunk {token}", **channel}
        url = sim.url + "/services/collector/event"
        return requests.post(url, data='{"event": "a"}', headers=headers, timeout=5)

    with SplunkHecSimulator(token=old, ack=True) as sim:
        rotated = requests.post(sim.url + "/_sim/keys", json={"token": new}, timeout=5)
        assert rotated.json() == {"rotated": ["token"]} and new not in rotated.text
        refused = post(sim, old)
        assert (refused.status_code, refused.json()["code"]) == (403, 4)
        assert "ackId" in post(sim, new).json()
        for bad in ({}, {"token": ""}, {"token": new, "other": 1}, [new]):
            assert requests.post(sim.url + "/_sim/keys", json=bad, timeout=5).status_code == 400
        assert requests.post(sim.url + "/_sim/reset", timeout=5).ok
        assert post(sim, new).status_code == 403
        assert post(sim, old).json()["code"] == 0


def test_datastream_json_lines_array_and_out_file(cx: CoralogixSink) -> None:
    assert cx.out_path is not None
    url, headers = cx.url + "/logs/datastream", {"private_key": CX_KEY}
    lines = b'{"id":"a"}\n{"id":"b"}\n'
    assert requests.post(url, data=lines, headers=headers, timeout=5).status_code == 200
    assert requests.post(url, json=[{"id": "c"}], headers=headers, timeout=5).status_code == 200
    bad = requests.post(url, data=b'{"id":"d"}\nnope\n', headers=headers, timeout=5)
    assert bad.status_code == 400 and "line 2" in bad.json()["message"]
    assert requests.post(url, data=lines, headers={"private_key": "x"}, timeout=5).status_code in (
        401,
        403,
    )
    assert [e["id"] for e in cx.events()] == ["a", "b", "c"]
    written = [json.loads(line) for line in cx.out_path.read_text().splitlines()]
    assert [r["record"]["id"] for r in written] == ["a", "b", "c"]
    received = requests.get(cx.url + "/_sim/received", timeout=5).json()
    assert received == cx.received


def test_bulk_and_sink_faults(cx: CoralogixSink) -> None:
    headers = {"Authorization": f"Bearer {CX_KEY}"}
    body = {"applicationName": "jc", "subsystemName": "di", "logEntries": [{"text": "hi"}]}
    cx.inject_fault(429, retry_after=2, path="/logs/v1/bulk")
    limited = requests.post(cx.url + "/logs/v1/bulk", json=body, headers=headers, timeout=5)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    ok = requests.post(cx.url + "/logs/v1/bulk", json=body, headers=headers, timeout=5)
    assert ok.status_code == 200
    record = {"applicationName": "jc", "subsystemName": "di", "text": "hi"}
    assert cx.received == [{"endpoint": "bulk", "record": record}]
    assert cx.stats["by_status"] == {"429": 1, "200": 1}


# -- CLI ------------------------------------------------------------------------------------


def test_cli_refuses_remote_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    args = ["--backlog", "40", "--burst", "3", "--rate", "0"]
    args += ["--write-config", str(config_path), "--seed", "1"]
    with sandbox_process(*args) as line:
        urls = dict(part.split("=", 1) for part in line.split()[3:])
        config = json.loads(config_path.read_text())
        assert config["jumpcloud"]["base_url"] == urls["jumpcloud"]
        assert config["siem"]["url"] == urls["coralogix"] + "/logs/datastream"
        assert config["state_dir"] == str(tmp_path / "di2siem-state")
        start = format_ts(now_ms() - 5 * 86_400_000)
        response = requests.post(
            urls["jumpcloud"] + EVENTS,
            json=query(start_time=start),
            headers={"x-api-key": JC_KEY},
            timeout=5,
        )
        assert len(response.json()) == 43


def test_di2siem_sandbox_delegates_to_the_simulators(capsys: pytest.CaptureFixture[str]) -> None:
    from di2siem.cli import main as di2siem_main

    assert di2siem_main(["sandbox", "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_di2siem_sandbox_without_the_simulators_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from di2siem.cli import main as di2siem_main

    monkeypatch.setitem(sys.modules, "di2siem_sandbox", None)  # as if not installed
    assert di2siem_main(["sandbox", "--backlog", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "pip install di2siem-sandbox" in captured.err


def test_the_simulators_need_only_the_standard_library() -> None:
    """di2siem-sandbox depends on nothing (sandbox/pyproject.toml), the collector included."""
    package = Path(__file__).resolve().parents[2] / "sandbox" / "di2siem_sandbox"
    imported = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    assert imported and imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names


def test_python_m_di2siem_sandbox_and_its_console_script_run_it() -> None:
    script = Path(sys.executable).with_name("di2siem-sandbox")
    for argv in ([sys.executable, "-m", "di2siem_sandbox"], [str(script)]):
        proc = subprocess.run(
            [*argv, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "--write-config" in proc.stdout


def test_stopped_simulator_is_down_for_pooled_connections() -> None:
    sim = JumpCloudSimulator().start()
    session = requests.Session()
    url = sim.url + EVENTS
    assert session.post(url, json=query(), headers={"x-api-key": JC_KEY}).status_code == 200
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        session.post(url, json=query(), headers={"x-api-key": JC_KEY}, timeout=2)


def test_live_generation_with_late_events(jc: JumpCloudSimulator) -> None:
    jc.start_live(rate=100, late_fraction=0.5, late_delay_s=0.3)
    time.sleep(0.45)
    jc.stop_live()
    stats = jc.stats
    visible, pending = sum(stats["events_stored"].values()), sum(stats["events_pending"].values())
    assert visible > 5 and pending > 3
    time.sleep(0.4)
    assert jc.event_count() == visible + pending
    start = format_ts(now_ms() - 60_000)
    assert len(post_jc(jc, query(start_time=start)).json()) == visible + pending


def test_control_burst_deep_events_and_malformed_page(jc: JumpCloudSimulator) -> None:
    at = "2022-12-18T06:00:00.000Z"
    response = requests.post(jc.url + "/_sim/events", json={"burst": 4, "at": at}, timeout=5)
    assert response.json()["added"] == 4
    jc.add_events([deep_event(depth=15, at=at)])
    page = post_jc(jc, query()).json()
    assert len(page) == 5 and len({e["timestamp"] for e in page}) == 1
    assert max(event_depth(e) for e in page) > 10
    jc.inject_fault(200, body={"not": "an array"}, path="/events")
    assert post_jc(jc, query()).json() == {"not": "an array"}


def test_sandbox_help_shows_defaults_and_how_to_stop(capsys) -> None:
    from di2siem.cli import main as di2siem_main

    assert di2siem_main(["sandbox", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 8400)" in out and "(default: 2000)" in out
    assert "stop it with Ctrl-C (or SIGTERM)" in out
    assert "(default: None)" not in out and "(default: False)" not in out
    assert di2siem_main(["sandbox", "--backlg", "3"]) == 2
    assert "unknown option --backlg (did you mean --backlog?)" in capsys.readouterr().err
