"""Shared multi-org queries: several orgs served by one JumpCloud stream (jumpcloud.
shared_query_max_orgs), every event routed by its ``organization`` to its own org's cursor and
id memory.

Real HTTP on loopback throughout: the transport is checked on the wire by a raw socket server,
the grouping against the simulator (which counts the requests) and hostile JumpClouds of our own.
"""

from __future__ import annotations

import json
import re
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    JC_KEY,
    Env,
    console_run,
    kill_at_random,
    legacy_config,
    summary,
)
from di2siem.log import Logger
from di2siem.source.client import JumpCloudClient
from di2siem.throttle import BURST
from di2siem.timeutil import format_ms, now_ms, parse_ms
from di2siem.transport.retry import RetryPolicy
from di2siem.transport.session import HeaderLines
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import generate_events
from hostile import RawPeer
from hostile_jumpcloud import SHARED_ONLY, FakeJumpCloud


def read_request(sock: socket.socket) -> bytes:
    """The request head and body as sent (no HTTP parser in between)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_group_query_carries_one_x_org_id_line_per_org(tmp_path) -> None:
    from di2siem.config import load as load_config

    orgs = [f"{n:024x}" for n in range(1, 51)]
    heads: list[bytes] = []

    def behave(sock: socket.socket, peer: RawPeer) -> None:
        heads.append(read_request(sock))
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n[]"
        )

    with RawPeer(behave) as peer:
        path = tmp_path / "config.json"
        config = {
            "jumpcloud": {
                "api_key": "k-12345678",
                "base_url": f"http://127.0.0.1:{peer.port}",
                "org_ids": orgs,
            },
            "siem": {"format": "json_lines", "url": "http://127.0.0.1:1/x"},
            "state_dir": str(tmp_path / "state"),
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        cfg = load_config(str(path))
        client = JumpCloudClient(cfg.jumpcloud, RetryPolicy(max_retries=0), secrets=Logger())
        try:
            pages = list(client.pages("2026-01-01T00:00:00Z", tuple(orgs)))
        finally:
            client.close()
    assert pages == [("[]", [])]
    assert len(heads) == 1
    lines = heads[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    org_lines = [line for line in lines if line.lower().startswith(b"x-org-id:")]
    assert org_lines == [b"x-org-id: " + org.encode() for org in orgs]
    assert sum(line.lower().startswith(b"x-api-key:") for line in lines) == 1
    assert lines[0].startswith(b"POST /insights/directory/v1/events ")


def test_header_lines_refuse_values_that_would_split_or_fold() -> None:
    for bad in ([], [""], ["a\r\nx-api-key: stolen"], ["a,b"]):
        with pytest.raises(ValueError):
            HeaderLines(bad)
    assert HeaderLines(["a", "b"]).values == ("a", "b")


# -- grouping against the simulator ------------------------------------------------------------

MIN = 60_000
EVENTS_PATH = "/insights/directory/v1/events"


def org_ids(count: int) -> list[str]:
    return [f"{n:024x}" for n in range(1, count + 1)]


def seed(
    sim: JumpCloudSimulator,
    orgs: list[str],
    per_org: int,
    salt: int,
    minutes: float = 2,
    ago_minutes: float = 0,
) -> dict[str, list[dict]]:
    """``per_org`` new events per org, within ``minutes`` up to ``ago_minutes`` ago."""
    end = now_ms() - 1000 - int(ago_minutes * MIN)
    out = {}
    for n, org in enumerate(orgs):
        out[org] = generate_events(
            per_org, end - int(minutes * MIN), end, seed=salt * 100_000 + n, org=org
        )
        sim.add_events(out[org], org=org)
    return out


def configure(env: Env, sim: JumpCloudSimulator, sink, orgs: list[str], **top: Any) -> None:
    cfg = legacy_config(sim.url, sink.url, batch_size=top.pop("batch_size", 500))
    cfg["jumpcloud"].update(
        org_ids=orgs,
        max_requests_per_second=top.pop("rate", 100),
        page_size=top.pop("page_size", 10000),
    )
    if "shared" in top:
        cfg["jumpcloud"]["shared_query_max_orgs"] = top.pop("shared")
    env.write(cfg, **{"parallel_orgs": 2, **top})


def copies(sink) -> Counter:
    return Counter(r["record"]["id"] for r in sink.received)


def exactly_once(sink, *batches: dict[str, list[dict]]) -> None:
    got = copies(sink)
    want = {e["id"] for events in batches for evs in events.values() for e in evs}
    assert set(got) == want, "lost or foreign events"
    assert set(got.values()) == {1}, "doubled events"


def nothing_lost_copies_bounded(
    sink, kills: int, batch: int, *batches: dict[str, list[dict]]
) -> None:
    """After kill -9s: every event arrived, and the copies are at most one batch in flight
    per lane (parallel_orgs 2) and kill."""
    got = copies(sink)
    want = {e["id"] for events in batches for evs in events.values() for e in evs}
    assert set(got) == want, "an event was lost"
    doubled = sum(n - 1 for n in got.values())
    assert doubled <= kills * batch * 2, f"{doubled} copies after {kills} kills"


def queries(sim: JumpCloudSimulator) -> list[tuple[str, ...]]:
    """The x-org-id lines of each JumpCloud API request so far, in arrival order."""
    return [orgs for _, path, orgs in sorted(sim.arrivals) if path.startswith(EVENTS_PATH)]


def cursors_at_newest(env: Env, *batches: dict[str, list[dict]]) -> None:
    newest: dict[str, str] = {}
    for events in batches:
        for org, evs in events.items():
            newest[org] = max([newest.get(org, ""), *(e["timestamp"] for e in evs)])
    orgs = env.state()["orgs"]
    for org, ts in newest.items():
        assert parse_ms(orgs[org]["cursor"]) == parse_ms(ts), org


@pytest.fixture
def msp200() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=org_ids(200)) as sim:
        yield sim


def test_new_and_caught_up_orgs_share_queries_of_at_most_50(
    tmp_path: Path, msp200: JumpCloudSimulator, sink, capsys
) -> None:
    orgs = list(msp200.org_ids)
    env = Env(tmp_path, msp200, sink)
    configure(env, msp200, sink, orgs)
    first = seed(msp200, orgs, 2, salt=1)
    rc, _, err = env.run(capsys)  # new orgs: their first windows, 50 to a query
    assert rc == 0, err
    asked = queries(msp200)
    shared = [q for q in asked if len(q) > 1]
    assert len(shared) == 4 and all(len(q) == 50 for q in shared), [len(q) for q in asked]
    assert len(asked) <= 4 + 2, asked  # beside them at most one clock probe per lane
    exactly_once(sink, first)
    assert all(s["cursor"] for s in env.state()["orgs"].values())
    msp200.arrivals.clear()
    second = seed(msp200, orgs, 3, salt=2)
    rc, _, err = env.run(capsys)  # caught up: shared queries
    assert rc == 0, err
    asked = queries(msp200)
    shared = [q for q in asked if len(q) > 1]
    assert len(shared) == 4 and all(len(q) == 50 for q in shared), [len(q) for q in asked]
    assert sorted(org for q in shared for org in q) == sorted(orgs)
    # at most one clock probe per lane (parallel_orgs 2) beside the four shared queries
    assert len(asked) <= 4 + 2, asked
    assert "jumpcloud_requests=" in err and "shared_queries=4" in err
    exactly_once(sink, first, second)
    cursors_at_newest(env, first, second)
    lines = [line for line in err.splitlines() if "run summary" in line]
    assert sorted(summary(line)["org"] for line in lines) == sorted(orgs)
    assert {summary(line)["status"] for line in lines} == {"ok"}
    assert sum(int(summary(line)["shipped"]) for line in lines) == 3 * len(orgs)
    assert all(int(summary(line)["shipped"]) == 3 for line in lines)
    # a quiet run: every org served (its place moves on), nothing shipped, cursors kept
    msp200.arrivals.clear()
    before = {org: s["cursor"] for org, s in env.state()["orgs"].items()}
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert len([q for q in queries(msp200) if len(q) > 1]) == 4
    assert {org: s["cursor"] for org, s in env.state()["orgs"].items()} == before
    exactly_once(sink, first, second)


def test_shared_query_max_orgs_1_turns_sharing_off(tmp_path: Path, sink, capsys) -> None:
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=org_ids(6)) as sim:
        orgs = list(sim.org_ids)
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs, shared=1)
        first = seed(sim, orgs, 2, salt=1)
        assert env.run(capsys)[0] == 0
        second = seed(sim, orgs, 2, salt=2)
        assert env.run(capsys)[0] == 0
        assert all(len(q) == 1 for q in queries(sim))
        exactly_once(sink, first, second)


def run_lines(err: str) -> dict[str, dict[str, str]]:
    """Each org's run summary fields (the last one per org)."""
    return {
        summary(line)["org"]: summary(line) for line in err.splitlines() if "run summary" in line
    }


def test_a_backlog_gets_its_own_stream_and_the_group_does_not_wait(
    tmp_path: Path, sink, capsys
) -> None:
    orgs = org_ids(12)
    caught_up, newcomer = orgs[:11], orgs[11]
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, caught_up, page_size=50, batch_size=20)
        first = seed(sim, caught_up, 2, salt=1)
        assert env.run(capsys)[0] == 0
        # a new org with a long history, and a burst of 130 in one caught-up org: the shared
        # query itself runs over several pages
        history = seed(sim, [newcomer], 600, salt=2, minutes=120)
        burst = seed(sim, caught_up[:1], 130, salt=3)
        second = seed(sim, caught_up, 2, salt=4)
        configure(env, sim, sink, orgs, page_size=50, batch_size=20)
        sim.arrivals.clear()
        sim.latency_s = 0.05
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        asked = queries(sim)
        shared = [q for q in asked if len(q) > 1]
        assert len(shared) >= 3 and all(sorted(q) == sorted(caught_up) for q in shared), asked
        assert [q for q in asked if newcomer in q] == [(newcomer,)] * len(
            [q for q in asked if newcomer in q]
        )
        assert len([q for q in asked if q == (newcomer,)]) >= 12  # 600 events, pages of 50
        # the group finished while the newcomer's backfill was still streaming
        order = [summary(line)["org"] for line in err.splitlines() if "run summary" in line]
        assert order[-1] == newcomer and set(order[:-1]) == set(caught_up), order
        lines = run_lines(err)
        assert {f["status"] for f in lines.values()} == {"ok"}
        assert int(lines[caught_up[0]]["shipped"]) == 132
        exactly_once(sink, first, history, burst, second)
        cursors_at_newest(env, first, history, burst, second)


def test_unroutable_events_stop_the_group_and_its_orgs_go_alone(
    tmp_path: Path, sink, capsys
) -> None:
    orgs = org_ids(6)
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs, batch_size=3)
        first = seed(sim, orgs, 2, salt=1)
        assert env.run(capsys)[0] == 0
        second = seed(sim, orgs, 4, salt=2)
        # a lying answer to the shared query: one event without its organization (it is
        # org 0's, as its own stream says), one naming an org the query did not ask for
        end = now_ms() - 30_000
        odd = {
            orgs[0]: generate_events(1, end - 1000, end - 1000, seed=91, org=orgs[0]),
            orgs[1]: generate_events(1, end, end, seed=92, org="f" * 24),
        }
        del odd[orgs[0]][0]["organization"]
        for org, evs in odd.items():
            sim.add_events(evs, org=org)
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 0, err  # a fallback, not a failure: every org was served
        asked = queries(sim)
        # one shared query naming all six (in the order of their window starts)
        assert [sorted(q) for q in asked if len(q) > 1] == [sorted(orgs)], asked
        assert {q for q in asked if len(q) == 1} == {(org,) for org in orgs}, asked
        warnings = [
            line
            for line in err.splitlines()
            if "cannot route" in line or "without the organization" in line
        ]
        assert len(warnings) == 1, warnings
        named = re.search(r" orgs=(\S+)", warnings[0])
        assert named and sorted(named.group(1).split(",")) == sorted(orgs), warnings
        exactly_once(sink, first, second, odd)
        state = env.state()["orgs"]
        assert all(state[org].get("solo_until") for org in orgs)
        # next run: still alone (their windows start before that event), nothing doubled
        third = seed(sim, orgs, 2, salt=3)
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert all(len(q) == 1 for q in queries(sim))
        exactly_once(sink, first, second, odd, third)
        cursors_at_newest(env, first, second, odd, third)


def test_a_429_storm_on_shared_queries_pauses_every_lane(tmp_path: Path, sink, capsys) -> None:
    orgs = org_ids(20)
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs, shared=10, rate=8, retry_max_delay_seconds=5)
        # windows starting over an hour ago: no clock probe, every request is a shared query
        first = seed(sim, orgs, 2, salt=1, ago_minutes=90)
        assert env.run(capsys)[0] == 0
        second = seed(sim, orgs, 3, salt=2, ago_minutes=80)
        sim.arrivals.clear()
        sim.inject_fault(429, count=2, retry_after=1, path=EVENTS_PATH)
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        times = [t for t, path, _ in sorted(sim.arrivals) if path.startswith(EVENTS_PATH)]
        # the two groups' queries went at once (the run's burst), both got 429 + Retry-After:
        # 1, and the pause held every lane; then any BURST + 1 in a row span at least 1/rate
        assert BURST == 2 and times[1] - times[0] < 0.5, times[:2]
        assert times[2] - times[1] >= 0.95, times[:3]
        spans = [b - a for a, b in zip(times, times[BURST:])]
        assert min(spans) >= 1 / 8 - 0.05, spans
        assert [len(q) for q in queries(sim)] == [10] * 4  # two groups, two refused
        exactly_once(sink, first, second)
        cursors_at_newest(env, first, second)


def test_kill_9_loop_with_shared_queries_loses_nothing(tmp_path: Path, sink) -> None:
    orgs = org_ids(60)
    batch = 15
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs, page_size=200, batch_size=batch, rate=50)
        first = seed(sim, orgs, 2, salt=1)
        result = console_run(env.path)
        assert result.returncode == 0, result.stderr
        second = seed(sim, orgs, 40, salt=2, minutes=5)
        sim.arrivals.clear()
        sink.inject_fault(None, count=-1, delay_s=0.03)  # every POST takes a while
        kills = kill_at_random(env.path, rounds=8, seed=78, low=0.4, high=1.0)
        sink.clear_faults()
        result = console_run(env.path)
        assert result.returncode == 0, result.stderr
        assert kills >= 5
        assert sum(len(q) > 1 for q in queries(sim)) >= kills  # the kills hit shared streams
        nothing_lost_copies_bounded(sink, kills, batch, first, second)
        cursors_at_newest(env, first, second)


def test_a_hostile_jumpcloud_lying_to_shared_queries_gets_nothing_guessed(
    tmp_path: Path, sink, capsys
) -> None:
    """Only shared queries get the lies (an event without organization, one naming an org
    nobody asked for): they are never shipped, the orgs fall back to their own streams, and
    nothing of theirs is lost or doubled over the following runs. Exit code 0: a fallback."""
    orgs = org_ids(3)
    with FakeJumpCloud(page_size=4) as jc:
        env = Env(tmp_path, jc, sink)  # type: ignore[arg-type]  (only .url is used)
        cfg = legacy_config(jc.url, sink.url, batch_size=2)
        cfg["jumpcloud"].update(org_ids=orgs, max_requests_per_second=100)
        env.write(cfg, parallel_orgs=1)
        now = jc.now()
        own: dict[str, list[dict]] = {org: [] for org in orgs}

        def event(n: int, org: str | None, at: int) -> dict:
            e = {"id": f"{n:024x}", "service": "directory", "timestamp": format_ms(at)}
            if org is not None:
                e["organization"] = org
            return e

        n = 0
        for at in range(now - 600_000, now - 300_000, 100_000):  # first run: each org alone
            for org in orgs:
                n += 1
                own[org].append(event(n, org, at))
                jc.add_for(org, own[org][-1])
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        lies = [event(900, None, now - 60_000), event(901, "f" * 24, now - 59_000)]
        for step, at in enumerate(range(now - 120_000, now - 1000, 10_000)):
            if step == 4:
                jc.add_for(SHARED_ONLY, *lies)
            org = orgs[step % 3]
            n += 1
            own[org].append(event(n, org, at))
            jc.add_for(org, own[org][-1])
        del jc.scopes[:]
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        shared = [n for n, scope in enumerate(jc.scopes) if len(scope) > 1]
        assert shared and {tuple(sorted(jc.scopes[n])) for n in shared} == {tuple(sorted(orgs))}, (
            jc.scopes
        )
        # then each org alone, in the same run
        assert {jc.scopes[n] for n in range(shared[-1] + 1, len(jc.scopes))} == {
            (org,) for org in orgs
        }, jc.scopes
        named = re.search(r" orgs=(\S+)", err)
        assert "without the organization" in err and named, err
        assert sorted(named.group(1).split(",")) == sorted(orgs), err
        state = env.state()["orgs"]
        assert all(state[org].get("solo_until") for org in orgs)
        del jc.scopes[:]
        rc, _, err = env.run(capsys)  # alone now: the lies never reach these streams
        assert rc == 0, err
        assert jc.scopes and all(len(s) == 1 for s in jc.scopes), jc.scopes
        assert "without the organization" not in err
        got = copies(sink)
        assert set(got) == {e["id"] for evs in own.values() for e in evs}, "lost, or a lie shipped"
        assert set(got.values()) == {1}, "doubled"
        cursors_at_newest(env, own)


def test_plan_turns_groups_only_caught_up_orgs_with_close_window_starts() -> None:
    from di2siem.scheduler.plan import RECENT_MS, SPREAD_MS, plan_turns

    now = now_ms()
    overlap = 300_000

    def meta(cursor_ago: int, status: str = "ok", **extra: Any) -> dict[str, Any]:
        ops = {"last_status": status}
        return {"cursor": format_ms(now - cursor_ago), "floor": None, "ops": ops, **extra}

    metas: dict[str, Any] = {f"c{n}": meta(60_000 + n) for n in range(5)}  # caught up
    metas["far"] = meta(overlap + SPREAD_MS + 120_000)  # caught up, starts over an hour earlier
    metas["far2"] = meta(overlap + SPREAD_MS + 130_000)
    metas["old"] = meta(RECENT_MS)  # its window starts more than a day ago
    metas["cut"] = meta(60_000, "budget")
    metas["failed"] = meta(60_000, "failed")
    metas["new"] = None
    metas["alone"] = meta(60_000, solo_until=format_ms(now))
    metas["provider:p1"] = meta(60_000)
    order = ["new", "c3", "far", "cut", "c0", "old", "far2", "c1", "failed", "c2", "c4"]
    order += ["alone", "provider:p1"]
    turns = plan_turns(order, metas, overlap, 3, now, initial_days_back=-1)
    # by window start: (far2, far), then c4, c3, c2 | c1, c0 (at most 3); each group in the
    # place of its least recently served member
    assert turns == [
        "new",
        ("c3", "c2", "c4"),
        ("far", "far2"),
        "cut",
        ("c0", "c1"),
        "old",
        "failed",
        "alone",
        "provider:p1",
    ]
    assert plan_turns(order, metas, overlap, 1, now) == order


def test_a_shared_stream_cut_by_the_budget_leaves_its_orgs_to_their_own_streams(
    tmp_path: Path, sink, capsys
) -> None:
    orgs = org_ids(5)
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs, batch_size=10, page_size=100)
        first = seed(sim, orgs, 2, salt=1)
        assert env.run(capsys)[0] == 0
        second = seed(sim, orgs, 200, salt=2, minutes=4)  # a backlog for every org
        sink.inject_fault(None, count=-1, delay_s=0.05)  # 100 batches: longer than the budget
        env.edit(lambda cfg: cfg.update(run_time_budget_seconds=1.5))
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert queries(sim) and all(sorted(q) == sorted(orgs) for q in queries(sim) if len(q) > 1)
        assert any(len(q) > 1 for q in queries(sim))
        assert {f["status"] for f in run_lines(err).values()} == {"budget"}
        # not caught up: next run each org gets its own stream
        sink.clear_faults()
        env.edit(lambda cfg: cfg.update(run_time_budget_seconds=60))
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert {q for q in queries(sim)} == {(org,) for org in orgs}
        exactly_once(sink, first, second)
        cursors_at_newest(env, first, second)


def test_one_refused_member_costs_only_itself_and_the_rest_ship_in_the_same_run(
    tmp_path: Path, sink, capsys
) -> None:
    """JumpCloud refuses a shared query with 402 when one member has no Directory Insights
    (the answer does not say which): the other members ship in the same run, alone, and only
    the refused org fails; the next run the healthy ones share again."""
    orgs = org_ids(4)
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs)
        first = seed(sim, orgs, 2, salt=1)
        assert env.run(capsys)[0] == 0
        second = seed(sim, orgs, 3, salt=2)
        refused = orgs[2]
        sim.set_insights(refused, False)
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 1, err  # one org failed
        asked = queries(sim)
        assert [sorted(q) for q in asked if len(q) > 1] == [sorted(orgs)], asked
        assert {q for q in asked if len(q) == 1} == {(org,) for org in orgs}, asked
        lines = run_lines(err)
        assert {org: f["status"] for org, f in lines.items()} == {
            org: "failed" if org == refused else "ok" for org in orgs
        }
        assert "JumpCloud 402" in err
        healthy = [org for org in orgs if org != refused]
        exactly_once(sink, first, {org: second[org] for org in healthy})
        cursors_at_newest(env, first, {org: second[org] for org in healthy})
        ops = {org: s["ops"] for org, s in env.state()["orgs"].items()}
        assert ops[refused]["last_status"] == "failed" and "402" in ops[refused]["last_error"]
        assert all(ops[org]["last_status"] == "ok" for org in healthy)
        # enabled again: nothing was lost, the refused org catches up alone, the rest share
        sim.set_insights(refused, True)
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert [sorted(q) for q in queries(sim) if len(q) > 1] == [sorted(healthy)]
        exactly_once(sink, first, second)
        cursors_at_newest(env, first, second)


# -- new orgs grouped in their first run (issue 19) ---------------------------------------------


def test_a_new_member_with_a_large_backlog_leaves_its_group_in_the_first_run(
    tmp_path: Path, sink, capsys
) -> None:
    """A fresh MSP: 12 new orgs with a few events each share one query; one of them has
    more than LEAVE_AFTER_PAGES pages of events: it leaves the group and continues alone, the
    others are served together, every event exactly once, all in the first run."""
    from di2siem.engine.shared import LEAVE_AFTER_PAGES

    orgs = org_ids(12)
    large = orgs[5]
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs, page_size=20, batch_size=10)
        few = seed(sim, [o for o in orgs if o != large], 3, salt=1, minutes=60)
        backlog = seed(sim, [large], 300, salt=2, minutes=60)
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert "has a large backlog: it continues alone" in err
        asked = queries(sim)
        groups = [sorted(q) for q in asked if len(q) > 1]  # every page of each query
        queried = [g for n, g in enumerate(groups) if n == 0 or g != groups[n - 1]]
        rest = sorted(o for o in orgs if o != large)
        # all new: one query at first; then the others together again, without the large one
        assert queried == [sorted(orgs), rest], queried
        assert len([q for q in asked if q == (large,)]) >= (300 - LEAVE_AFTER_PAGES * 20) // 20
        exactly_once(sink, few, backlog)
        cursors_at_newest(env, few, backlog)
        lines = run_lines(err)
        assert set(lines) == set(orgs) and {f["status"] for f in lines.values()} == {"ok"}
        # the next run: the group shares again; the large one, caught up, alone until its
        # window starts after where it left
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert {tuple(sorted(q)) for q in queries(sim) if len(q) > 1} == {tuple(rest)}
        exactly_once(sink, few, backlog)


def test_kill_9_during_a_grouped_first_run_loses_nothing(tmp_path: Path, sink) -> None:
    orgs = org_ids(40)
    batch = 10
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs, page_size=100, batch_size=batch, rate=50)
        first = seed(sim, orgs, 20, salt=3, minutes=30)
        sink.inject_fault(None, count=-1, delay_s=0.03)
        kills = kill_at_random(env.path, rounds=5, seed=19, low=0.3, high=0.8)
        sink.clear_faults()
        result = console_run(env.path)
        assert result.returncode == 0, result.stderr
        assert kills >= 3
        assert queries(sim) and len(queries(sim)[0]) > 1  # the first run was a shared query
        nothing_lost_copies_bounded(sink, kills, batch, first)
        cursors_at_newest(env, first)


def test_a_new_member_refused_by_jumpcloud_fails_alone_and_is_not_regrouped(
    tmp_path: Path, sink, capsys
) -> None:
    orgs = org_ids(5)
    refused = orgs[1]
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=orgs) as sim:
        env = Env(tmp_path, sim, sink)
        configure(env, sim, sink, orgs)
        first = seed(sim, orgs, 2, salt=4)
        sim.set_insights(refused, False)
        rc, _, err = env.run(capsys)
        assert rc == 1 and "JumpCloud 402" in err
        healthy = [org for org in orgs if org != refused]
        lines = run_lines(err)
        assert {o: f["status"] for o, f in lines.items()} == {
            o: "failed" if o == refused else "ok" for o in orgs
        }
        exactly_once(sink, {org: first[org] for org in healthy})
        # the next run: the healthy ones share, the refused new org goes alone (not grouped
        # again, which would refuse its group every run)
        sim.arrivals.clear()
        rc, _, err = env.run(capsys)
        assert rc == 1
        asked = queries(sim)
        assert [sorted(q) for q in asked if len(q) > 1] == [sorted(healthy)]
        assert (refused,) in asked
