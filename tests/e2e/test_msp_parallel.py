"""Many orgs per run (parallel_orgs) under one JumpCloud request-rate cap: faults, 429 storms
(one 429 pauses every org) and kill -9 loops lose nothing and double at most the batch in
flight per org and kill. Real HTTP to the simulators on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    FAST,
    JC_KEY,
    Env,
    di2siem_executable,
    kill_at_random,
    legacy_config,
    summary,
)
from di2siem.throttle import BURST
from di2siem.timeutil import now_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import generate_events

ORGS = [f"{n:02d}" + "5f1b0c2e8d3a4b00123456"[:22] for n in range(8)]
MIN = 60_000
EVENTS_PATH = "/insights/directory/v1/events"


@pytest.fixture
def msp() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=ORGS) as sim:
        yield sim


def _seed(sim: JumpCloudSimulator, per_org: int, minutes: int = 20) -> dict[str, list[dict]]:
    end = now_ms() - 1000
    events = {}
    for n, org in enumerate(sim.org_ids):
        events[org] = generate_events(per_org, end - minutes * MIN, end, seed=n + 1, org=org)
        sim.add_events(events[org], org=org)
    return events


def _config(env: Env, sim: JumpCloudSimulator, sink, **top) -> dict:
    cfg = legacy_config(sim.url, sink.url, batch_size=top.pop("batch_size", 25))
    cfg["jumpcloud"]["org_ids"] = list(sim.org_ids)
    cfg["jumpcloud"]["max_requests_per_second"] = top.pop("rate", 100)
    cfg["jumpcloud"]["page_size"] = top.pop("page_size", 10000)
    # the lanes themselves: every org its own stream (shared queries: test_shared_query.py)
    cfg["jumpcloud"]["shared_query_max_orgs"] = top.pop("shared", 1)
    env.write(cfg, **top)
    return cfg


def _copies(sink) -> Counter:
    return Counter(r["record"]["id"] for r in sink.received)


def _assert_exactly_once(sink, events: dict[str, list[dict]]) -> None:
    copies = _copies(sink)
    assert set(copies) == {e["id"] for evs in events.values() for e in evs}, "lost or foreign"
    assert set(copies.values()) == {1}, "doubled"


def _api_arrivals(sim: JumpCloudSimulator) -> list[float]:
    return sorted(t for t, path, _ in sim.arrivals if path.startswith("/insights/"))


def test_orgs_are_served_in_parallel_with_faults_exactly_once(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    events = _seed(msp, 60)
    env = Env(tmp_path, msp, sink)
    _config(env, msp, sink, parallel_orgs=4, page_size=20)
    msp.latency_s = 0.2
    msp.inject_fault(503, count=3)  # JumpCloud fails now and then...
    sink.inject_fault(500, count=3)  # ... and so does the SIEM (max_retries: 3)
    started = time.monotonic()
    rc, _, err = env.run(capsys)
    took = time.monotonic() - started
    assert rc == 0, err
    _assert_exactly_once(sink, events)
    lines = [line for line in err.splitlines() if "run summary" in line]
    assert sorted(summary(line)["org"] for line in lines) == sorted(ORGS)
    assert sum(int(summary(line)["retries"]) for line in lines) == 6
    # 8 orgs x 4 pages x 0.2 s of latency is 6.4 s one after another; four lanes overlap them
    assert took < 4.5, f"not parallel: {took:.1f}s"


def test_a_long_backfill_does_not_starve_the_other_orgs(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    end = now_ms() - 1000
    big = generate_events(1200, end - 120 * MIN, end - 10 * MIN, seed=1, org=ORGS[0])
    msp.add_events(big, org=ORGS[0])
    small = {}
    for n, org in enumerate(ORGS[1:], 2):
        small[org] = generate_events(5, end - 5 * MIN, end, seed=n, org=org)
        msp.add_events(small[org], org=org)
    env = Env(tmp_path, msp, sink)
    _config(env, msp, sink, parallel_orgs=2, run_time_budget_seconds=1.5, batch_size=10)
    sink.inject_fault(None, count=-1, delay_s=0.02)  # the backfill alone outlasts the budget
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    copies = _copies(sink)
    for org, evs in small.items():
        assert {e["id"] for e in evs} <= set(copies), f"org {org} starved"
    assert 0 < sum(1 for e in big if e["id"] in copies) < len(big)  # cut by the budget
    assert set(copies.values()) == {1}
    sink.clear_faults()
    env.edit(lambda cfg: cfg.update(run_time_budget_seconds=60))
    assert env.run(capsys)[0] == 0
    _assert_exactly_once(sink, {**small, ORGS[0]: big})


def test_request_rate_cap_and_one_429_pauses_every_org(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    events = _seed(msp, 8)
    env = Env(tmp_path, msp, sink)
    rate = 8.0
    _config(env, msp, sink, parallel_orgs=8, rate=rate, retry_max_delay_seconds=5)
    msp.inject_fault(429, count=BURST + 1, retry_after=1, path=EVENTS_PATH)
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    _assert_exactly_once(sink, events)
    times = _api_arrivals(msp)
    assert len(times) >= len(ORGS) + BURST + 1
    # the run's first BURST requests went at once and got 429 + Retry-After: 1, as did the
    # next one; each 429 paused EVERY org for 1 s
    assert times[BURST - 1] - times[0] < 0.5, times[:BURST]
    after = times[BURST - 1 :]
    assert after[1] - after[0] >= 0.95 and after[2] - after[1] >= 0.95, after[:3]
    # the global cap, whichever org sends them: a token bucket of BURST, so any BURST + 1
    # requests in a row span at least 1/rate (less the jitter of sending)
    spans = [b - a for a, b in zip(times, times[BURST:])]
    assert min(spans) >= 1 / rate - 0.05, spans
    in_any_second = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert in_any_second <= rate + BURST


def test_a_429_storm_past_the_budget_ends_the_run_cleanly(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    events = _seed(msp, 4)
    env = Env(tmp_path, msp, sink)
    _config(
        env, msp, sink, parallel_orgs=8, rate=5, run_time_budget_seconds=2,
        retry_max_delay_seconds=30, max_retries=5,
    )  # fmt: skip
    msp.inject_fault(429, count=-1, retry_after=30)  # everyone, for longer than the budget
    started = time.monotonic()
    rc, _, err = env.run(capsys)
    assert time.monotonic() - started < 2 + 5  # budget plus the exchange grace
    assert len(_api_arrivals(msp)) <= 2, "the shared pause did not hold the other orgs back"
    assert rc == 1 and "429" in err  # loud: nothing could be read
    assert not sink.received
    msp.clear_faults()
    env.edit(lambda cfg: cfg.update(run_time_budget_seconds=60))
    assert env.run(capsys)[0] == 0
    _assert_exactly_once(sink, events)


def test_kill_9_loop_with_parallel_orgs_doubles_at_most_one_batch_per_org(
    tmp_path: Path, msp: JumpCloudSimulator, sink
) -> None:
    batch = 15
    events = _seed(msp, 150, minutes=30)
    cfg = legacy_config(msp.url, sink.url, batch_size=batch)
    # each org its own stream (tests/e2e/test_shared_query.py kills shared ones)
    cfg["jumpcloud"].update(
        org_ids=ORGS, page_size=60, max_requests_per_second=50, shared_query_max_orgs=1
    )
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({**cfg, **FAST, "state_dir": str(tmp_path / "state"), "parallel_orgs": 4})
    )
    os.chmod(path, 0o600)
    sink.inject_fault(None, count=-1, delay_s=0.1)  # every POST takes a while
    # each kill lands 0..0.2 s after the run's first accepted batch: mid-stream, however
    # long the start takes (80 batches over 4 lanes take 2 s)
    kills = kill_at_random(
        path, rounds=8, seed=77, low=0.0, high=0.2, progress=lambda: len(sink._chunks)
    )
    sink.clear_faults()
    result = subprocess.run(
        [di2siem_executable(), "run", "--config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert kills >= 5
    copies = _copies(sink)
    assert set(copies) == {e["id"] for evs in events.values() for e in evs}, "an event was lost"
    for org, evs in events.items():
        doubled = sum(copies[e["id"]] - 1 for e in evs)
        assert doubled <= kills * batch, f"org {org}: {doubled} copies after {kills} kills"


def test_orgs_the_rate_cap_left_out_keep_their_turn(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    """At 2 requests/s and a 1.5 s budget only some of 8 orgs get a request: the others are
    not counted as served (no run record) and go first in the next run."""
    events = _seed(msp, 3)
    env = Env(tmp_path, msp, sink)
    _config(env, msp, sink, parallel_orgs=8, rate=2, run_time_budget_seconds=1.5)
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    first = {summary(line)["org"] for line in err.splitlines() if "run summary" in line}
    assert 1 <= len(first) <= 4, first
    assert f"remaining orgs wait for the next run orgs_left={8 - len(first)}" in err
    orgs = env.state()["orgs"]
    assert set(orgs) == first  # the others have no record: their turn did not happen
    msp.arrivals.clear()
    env.edit(lambda cfg: cfg.update(parallel_orgs=1))  # one lane: requests in serving order
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    asked = [org for _, _, orgs in sorted(msp.arrivals) for org in orgs]
    left = set(ORGS) - first
    first_turns = min(len(asked), len(left))
    assert first_turns and set(asked[:first_turns]) <= left, asked  # they go first
    env.edit(lambda cfg: cfg.update(run_time_budget_seconds=30))
    assert env.run(capsys)[0] == 0
    _assert_exactly_once(sink, events)
