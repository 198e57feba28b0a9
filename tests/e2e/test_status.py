"""`di2siem status` and the totals kept in the state, against the simulators (real HTTP)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import (
    ORG_A,
    ORG_B,
    Env,
    counts,
    di2siem_executable,
    legacy_config,
    recent_events,
)
from di2siem.timeutil import now_ms, parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import generate_events

MIN = 60_000
TOTAL_KEYS = ("shipped_total", "fetched_total", "duplicates_total", "skipped_total")


def status(env: Env, capsys, *extra: str) -> tuple[int, dict[str, Any]]:
    rc, out, err = env.run(capsys, "--json", *extra, command="status")
    assert err == "", err
    return rc, json.loads(out)


def by_org(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["org"]: entry for entry in report["orgs"]}


@pytest.fixture
def msp() -> Iterator[JumpCloudSimulator]:
    from conftest import JC_KEY

    with JumpCloudSimulator(api_key=JC_KEY, org_ids=[ORG_A, ORG_B]) as sim:
        yield sim


def test_totals_agree_with_the_sink_across_runs(tmp_path, msp, sink, capsys) -> None:
    env = Env(tmp_path, msp, sink)
    end = now_ms() - 1000
    msp.add_events(generate_events(120, end - 30 * MIN, end, seed=1, org=ORG_A), org=ORG_A)
    msp.add_events(generate_events(80, end - 30 * MIN, end, seed=2, org=ORG_B), org=ORG_B)
    cfg = legacy_config(msp.url, sink.url)
    cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
    env.write(cfg)
    expected = {ORG_A: Counter(), ORG_B: Counter()}
    for round_no in range(3):
        if round_no == 2:  # new events for org A only
            msp.add_events(
                generate_events(25, now_ms() - 60_000, now_ms() - 10, seed=3, org=ORG_A),
                org=ORG_A,
            )
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        for line in err.splitlines():
            if "run summary" in line:
                org = ORG_A if f"org={ORG_A}" in line else ORG_B
                expected[org].update(counts(line))
    rc, report = status(env, capsys)
    assert rc == 0 and report["healthy"] is True
    assert report["version"] and set(by_org(report)) == {ORG_A, ORG_B}
    received = Counter(e["organization"] for e in sink.events())
    assert received == {ORG_A: 145, ORG_B: 80}
    for org, entry in by_org(report).items():
        assert entry["shipped_total"] == received[org] == expected[org]["shipped"]
        assert entry["fetched_total"] == expected[org]["fetched"]
        assert entry["duplicates_total"] == expected[org]["duplicates"] > 0
        assert entry["skipped_total"] == 0
        assert entry["healthy"] is True and entry["last_error"] is None
        assert entry["cursor"] == env.state()["orgs"][org]["cursor"]
        assert 0 <= entry["lag_seconds"] <= (now_ms() - parse_ms(entry["cursor"])) / 1000 + 1
        assert parse_ms(entry["last_success"]) == parse_ms(entry["last_run"])
    # the table a person reads: one row per org and the verdict
    rc, out, _ = env.run(capsys, command="status")
    assert rc == 0
    assert out.splitlines()[0].split()[:4] == ["ORG", "HEALTHY", "STATE", "LAST"]
    assert any(
        line.startswith(ORG_A) and line.split()[1:3] == ["yes", "ok"] and "145" in line
        for line in out.splitlines()
    )
    assert out.splitlines()[-1].endswith("status: healthy (max lag 600s)")


def test_failing_siem_key_unhealthy_naming_the_siem(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(40))
    env.write()
    assert env.run(capsys)[0] == 0
    rc, before = status(env, capsys)
    assert rc == 0
    ops_before = env.state()["orgs"]["_default"]["ops"]
    assert ops_before["totals"]["failures"] == 0

    env.cx.private_key = "a-key-the-collector-does-not-have"
    env.jc.add_events(recent_events(5, seed=7, minutes=1, end_ago_ms=10))
    rc, _, err = env.run(capsys)
    assert rc == 1 and "SIEM answered 403" in err
    rc, after = status(env, capsys)
    assert rc == 1 and after["healthy"] is False
    entry = by_org(after)["_default"]
    assert entry["healthy"] is False and entry["problem"] == "the last run failed"
    assert entry["last_error"].startswith("SIEM answered 403: check siem.headers.private_key")
    assert entry["last_success"] == by_org(before)["_default"]["last_success"]
    assert entry["last_run"] != entry["last_success"]
    assert entry["shipped_total"] == 40 == len(env.shipped())
    assert env.state()["orgs"]["_default"]["ops"]["totals"]["failures"] == 1

    rc, out, _ = env.run(capsys, command="status")
    assert rc == 1 and "NOT healthy" in out and "last error: SIEM answered 403" in out

    env.cx.private_key = env.cx.api_key  # fixed: the next run ships and heals the status
    assert env.run(capsys)[0] == 0
    rc, healed = status(env, capsys)
    assert rc == 0 and by_org(healed)["_default"]["shipped_total"] == 45 == len(env.shipped())
    assert env.state()["orgs"]["_default"]["ops"]["totals"]["failures"] == 1


def test_expired_lag_is_unhealthy(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(10))
    env.write()
    assert env.run(capsys)[0] == 0
    assert status(env, capsys, "--max-lag", "600")[0] == 0
    time.sleep(0.2)
    rc, report = status(env, capsys, "--max-lag", "0.1")
    assert rc == 1 and report["healthy"] is False
    assert "more than --max-lag 0.1s" in by_org(report)["_default"]["problem"]


def test_before_the_first_run_and_usage_errors(env: Env, capsys) -> None:
    env.write()
    rc, report = status(env, capsys)
    assert rc == 1 and by_org(report)["_default"]["problem"] == "no run recorded yet"
    assert not env.state_dir.exists(), "status must not create the state"
    for bad in ("0", "-5", "soon", "nan"):
        rc, out, err = env.run(capsys, "--max-lag", bad, command="status")
        assert rc == 2 and "--max-lag" in err and out == ""
    env.edit(lambda cfg: cfg["siem"].pop("url"))
    rc, out, err = env.run(capsys, command="status")
    assert rc == 2 and err.startswith("di2siem: config error: siem.url") and out == ""
    env.write()
    env.state_file.parent.mkdir(parents=True)
    env.state_file.write_text("{not json")
    rc, report = status(env, capsys)
    assert rc == 1 and report["healthy"] is False and "not valid JSON" in report["error"]


def test_upgrade_keeps_cursor_and_totals_start_from_the_old_state(env: Env, capsys) -> None:
    """A state written before totals existed (no ops): counted from here on, never reset."""
    events = recent_events(30)
    env.jc.add_events(events)
    env.write()
    assert env.run(capsys)[0] == 0
    old = env.state()
    for org in old["orgs"].values():
        del org["ops"]
    env.legacy_state_file.write_text(json.dumps({"version": 1, "orgs": old["orgs"]}))
    env.jc.add_events(recent_events(6, seed=5, minutes=1, end_ago_ms=10))
    rc, _, err = env.run(capsys)
    assert rc == 0 and counts(err)["shipped"] == 6
    rc, report = status(env, capsys)
    entry = by_org(report)["_default"]
    assert (
        rc == 0 and entry["shipped_total"] == 6 and entry["fetched_total"] == counts(err)["fetched"]
    )
    assert env.state()["orgs"]["_default"]["cursor"] >= old["orgs"]["_default"]["cursor"]
    assert len(env.shipped_ids()) == len(set(env.shipped_ids())) == 36


def test_status_during_a_running_run_is_prompt_and_lock_free(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(20))
    env.write()
    assert env.run(capsys)[0] == 0
    env.jc.add_events(recent_events(5, seed=4, minutes=1, end_ago_ms=10))
    env.jc.inject_fault(None, count=1, delay_s=3)  # the next JumpCloud answer takes 3 s
    state_before = env.state_file.read_bytes()
    run = subprocess.Popen(
        [di2siem_executable(), "run", "--config", str(env.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while env.jc.stats.get("faults_served", 0) == 0:  # the run is waiting on JumpCloud
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.02)
        started = time.monotonic()
        rc, report = status(env, capsys)
        took = time.monotonic() - started
        assert run.poll() is None, "the run must still be in progress"
        assert rc == 0 and by_org(report)["_default"]["shipped_total"] == 20
        assert took < 1.0, f"status took {took:.2f}s while a run held the lock"
        assert env.state_file.read_bytes() == state_before, "status must not write the state"
        _, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert status(env, capsys)[1]["orgs"][0]["shipped_total"] == 25


def test_online_backlog_from_events_count(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(20))
    env.write()
    assert env.run(capsys)[0] == 0
    env.jc.add_events(recent_events(7, seed=8, minutes=1, end_ago_ms=10))
    rc, report = status(env, capsys, "--online")
    assert rc == 0 and by_org(report)["_default"]["backlog"] == 7
    assert "backlog_error" not in by_org(report)["_default"]
    count_queries = [r for r in env.jc.requests if r["path"].endswith("/events/count")]
    assert len(count_queries) == 1
    assert count_queries[0]["body"]["start_time"] > env.state()["orgs"]["_default"]["cursor"]
    rc, out, _ = env.run(capsys, "--online", command="status")
    assert rc == 0 and "BACKLOG" in out.splitlines()[0]

    env.jc.inject_fault(401, count=-1)
    rc, report = status(env, capsys, "--online")
    entry = by_org(report)["_default"]
    assert rc == 0 and entry["backlog"] is None  # health is about the runs, not this probe
    assert entry["backlog_error"].startswith("JumpCloud answered 401: check jumpcloud.api_key")


def test_online_asks_no_count_for_an_org_whose_state_is_unreadable(
    tmp_path, msp, sink, capsys
) -> None:
    """Its position is unknown: counting from initial_days_back would state a backlog that is
    not its own. The other org is counted; the unreadable one says why it is not."""
    from di2siem.state.layout import ORGS_DIR, org_file_name

    env = Env(tmp_path, msp, sink)
    end = now_ms() - 1000
    for seed, org in enumerate((ORG_A, ORG_B)):
        msp.add_events(generate_events(5, end - 10 * MIN, end, seed=seed, org=org), org=org)
    cfg = legacy_config(msp.url, sink.url)
    cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
    env.write(cfg)
    assert env.run(capsys)[0] == 0
    (env.state_dir / ORGS_DIR / org_file_name(ORG_B)).write_text("{not json", encoding="utf-8")
    msp.add_events(generate_events(3, end, now_ms() - 10, seed=9, org=ORG_A), org=ORG_A)
    rc, report = status(env, capsys, "--online")
    entries = by_org(report)
    assert rc == 1 and entries[ORG_A]["backlog"] == 3
    assert entries[ORG_B]["health"] == "unreadable" and entries[ORG_B]["backlog"] is None
    assert "state file is unreadable" in entries[ORG_B]["backlog_error"]
    counted = [r["org"] for r in msp.requests if r["path"].endswith("/events/count")]
    assert counted == [ORG_A]


DAY = 86_400_000


def test_budget_cut_backlog_reads_catching_up_and_is_not_healthy(env: Env, capsys) -> None:
    """A run cut by the budget with days of backlog succeeded, and yet the org is far behind:
    "catching up", exit 1, with --online its backlog and the runs still needed."""
    end = now_ms() - 58 * DAY
    env.jc.add_events(generate_events(300, end - 60 * MIN, end, seed=7))
    cfg = legacy_config(env.jc.url, env.cx.url, batch_size=10)
    cfg["jumpcloud"]["initial_days_back"] = -60
    env.write(cfg, run_time_budget_seconds=1)
    env.cx.inject_fault(None, count=-1, delay_s=0.15)  # slow sink: the budget cuts the run
    rc, _, err = env.run(capsys)
    assert rc == 0 and "status=budget" in err
    shipped = counts(err)["shipped"]
    rc, report = status(env, capsys)
    entry = by_org(report)["_default"]
    assert rc == 1 and report["healthy"] is False
    assert entry["health"] == "catching_up" and entry["catching_up"] is True
    assert entry["problem"].startswith("catching up: cursor 58d behind JumpCloud")
    assert entry["last_status"] == "budget" and entry["last_shipped"] == shipped
    rc, report = status(env, capsys, "--online")
    entry = by_org(report)["_default"]
    assert rc == 1 and entry["backlog"] == 300 - shipped
    assert entry["runs_to_catch_up"] == -(-(300 - shipped) // shipped)
    rc, out, _ = env.run(capsys, "--online", command="status")
    assert rc == 1 and "catching up" in out.splitlines()[1]
    assert f"backlog {300 - shipped} events: about {entry['runs_to_catch_up']} more runs" in out
    # a generous --max-lag: the same backlog is healthy, still read as catching up
    rc, report = status(env, capsys, "--max-lag", str(90 * 86400))
    assert rc == 0 and by_org(report)["_default"]["catching_up"] is True
    env.cx.clear_faults()
    assert env.run(capsys)[0] == 0  # caught up: the last events are 58 days old, and fine
    rc, report = status(env, capsys)
    entry = by_org(report)["_default"]
    assert rc == 0 and entry["health"] == "healthy" and entry["catching_up"] is False
    assert entry["lag_seconds"] > 57 * 86400


def test_first_run_in_progress_reads_running_not_never(env: Env, capsys) -> None:
    """Mid-run, status reads the run's progress: running, what it shipped so far; after a
    kill -9, interrupted (with what it had shipped)."""
    env.jc.add_events(recent_events(60, minutes=600))
    env.write(legacy_config(env.jc.url, env.cx.url, batch_size=10))
    env.cx.inject_fault(None, count=-1, delay_s=0.3)  # slow sink: the run takes ~2 s
    run = subprocess.Popen(
        [di2siem_executable(), "run", "--config", str(env.path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while len(env.cx.received) < 20:
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.02)
        rc, report = status(env, capsys)
        entry = by_org(report)["_default"]
        assert run.poll() is None, "the run must still be in progress"
        assert rc == 1 and entry["health"] == "running" and entry["running"] is True
        assert entry["shipped_total"] >= 10 and entry["catching_up"] is True
        assert entry["problem"].startswith("first run in progress: ")
        assert "shipped so far" in entry["problem"]
        run.kill()
        run.wait()
        rc, report = status(env, capsys)
        entry = by_org(report)["_default"]
        assert rc == 1 and entry["health"] == "interrupted" and entry["running"] is False
        assert f"it had shipped {entry['shipped_total']}" in entry["problem"]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
