"""Hostile peers of our own against the data, cursor and state promises (issue 6):
413 storms, time anomalies, a skewed clock, missing and repeated ids, a SIEM that keeps a
batch and drops the connection, a stuck lock holder, an unwritable state, an unsafe
state_dir. Real HTTP on loopback; the promise is asserted exactly."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    CX_KEY,
    FAST,
    JC_KEY,
    assert_no_secrets,
    assert_nothing_recorded,
    console_run,
    counts,
    legacy_config,
    summary,
)
from di2siem.cli import main
from di2siem.timeutil import now_ms, parse_ms
from di2siem_sandbox import CoralogixSink, JumpCloudSimulator
from di2siem_sandbox.events import format_ts, generate_events
from hostile import Exchange, HostilePeer
from hostile_jumpcloud import SHAPING_KEYS, FakeJumpCloud, keys

MIN = 60_000


def write_config(tmp: Path, jc_url: str, sink_url: str, **top: Any) -> Path:
    jumpcloud = top.pop("jumpcloud", {})
    siem = top.pop("siem", {})
    cfg = legacy_config(jc_url, sink_url, **siem)
    cfg["jumpcloud"].update(jumpcloud)
    cfg = {**cfg, **FAST, "state_dir": str(tmp / "state"), **top}
    path = tmp / "config.json"
    path.write_text(json.dumps(cfg))
    os.chmod(path, 0o600)
    return path


def run(path: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["run", "--config", str(path)])
    out, err = capsys.readouterr()
    assert_no_secrets(out, err)
    return rc, err


def failing_run(
    tmp_path: Path,
    jc: JumpCloudSimulator,
    events: list[dict[str, Any]],
    siem_url: str,
    capsys,
    batch_size: int,
    within_s: float,
) -> str:
    """A run against a hostile SIEM: it must fail (exit 1) within ``within_s``."""
    jc.add_events(events)
    path = write_config(tmp_path, jc.url, siem_url, siem={"batch_size": batch_size})
    started = time.monotonic()
    rc, err = run(path, capsys)
    assert rc == 1, err
    assert time.monotonic() - started < within_s
    return err


def resume_with_a_good_siem(
    tmp_path: Path, jc_url: str, events: list[dict[str, Any]], capsys, batch_size: int
) -> str:
    """The SIEM is fixed: the next run delivers every event exactly once (nothing was lost,
    nothing recorded that was not delivered). Returns the run's stderr."""
    with CoralogixSink(api_key=CX_KEY) as good:
        path = write_config(tmp_path, jc_url, good.url, siem={"batch_size": batch_size})
        rc, err = run(path, capsys)
        assert rc == 0, err
        assert keys(good.events()) == Counter(e["id"] for e in events)
    return err


def events_at(n: int, end: int, minutes: float, seed: int) -> list[dict[str, Any]]:
    return generate_events(n, end - int(minutes * MIN), end, seed=seed)


# -- silent loss: 413 storms -------------------------------------------------------------


def test_413_storm_stops_the_run_keeps_the_cursor_loses_nothing(tmp_path, capsys) -> None:
    events = events_at(60, now_ms() - 1000, 10, seed=61)
    with (
        JumpCloudSimulator(api_key=JC_KEY) as jc,
        HostilePeer(lambda ex: ex.reply(413, headers={"Connection": "close"})) as siem,
    ):
        err = failing_run(tmp_path, jc, events, siem.url, capsys, batch_size=16, within_s=5)
        assert "SIEM answered 413" in err and "siem.max_batch_bytes=1500000" in err
        assert counts(err)["skipped"] == 0 and counts(err)["shipped"] == 0
        assert "; skipped" not in err
        # halves down to one event, then stop: 16 -> 8 -> 4 -> 2 -> 1
        assert len(siem.requests()) == 5
        assert_nothing_recorded(tmp_path / "state")
        resume_with_a_good_siem(tmp_path, jc.url, events, capsys, batch_size=16)


# -- silent loss: time anomalies ----------------------------------------------------------


def test_future_untimed_and_unrepresentable_times_never_move_the_cursor(tmp_path, capsys) -> None:
    with FakeJumpCloud(page_size=7) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        now = jc.now()
        normal = events_at(20, now - 2000, 5, seed=62)
        hostile = [
            dict(normal[0], id="f" * 24, timestamp=format_ts(now + 3_600_000)),  # an hour ahead
            dict(normal[1], id="e" * 24, timestamp="2999-01-01T00:00:00.000Z"),
            dict(normal[2], id="d" * 24, timestamp="9999-12-31T23:59:60.000Z"),  # past 9999
            dict(normal[3], id="c" * 24, timestamp="10000-01-01T00:00:00.000Z"),
            dict(normal[4], id="b" * 24, timestamp="not a time"),
            {k: v for k, v in normal[5].items() if k not in ("id", "timestamp")},  # neither
        ]
        jc.add(*normal[:10], *hostile, *normal[10:])
        path = write_config(tmp_path, jc.url, sink.url, siem={"batch_size": 4})
        rc, err = run(path, capsys)
        assert rc == 0, err
        assert summary(err)["untimed"] == "4"
        org_file = tmp_path / "state" / "orgs" / "_default.json"
        cursor = parse_ms(json.loads(org_file.read_text())["cursor"])
        # at most JumpCloud's time of its last answer (the covered range), whatever the
        # future-stamped events say
        assert parse_ms(normal[-1]["timestamp"]) <= cursor <= jc.now(), "cursor left the range"

        expected = keys([*normal, *hostile])
        for round_ in range(3):  # later events, inside and past the overlap: none skipped
            time.sleep(0.05)
            later = events_at(15, jc.now() - 10, 0.01, seed=70 + round_)
            jc.add(*later)
            expected += keys(later)
            rc, err = run(path, capsys)
            assert rc == 0, err
            assert counts(err)["shipped"] == len(later)
            json.loads(org_file.read_text())  # always readable
        assert keys(sink.events()) == expected  # each exactly once


# -- host clock skew -------------------------------------------------------------------------


@pytest.mark.parametrize(("skew_min", "days_back"), [(10, -1), (-10, 0)])
def test_skewed_host_clock_neither_resends_nor_loses(
    tmp_path, capsys, skew_min: int, days_back: int
) -> None:
    """JumpCloud's clock (its Date header) minutes ahead of or behind the host's: a host
    behind must not re-read (and re-send) what lies between its now and the cursor; a host
    ahead must not ask for JumpCloud's future (initial_days_back 0)."""
    with (
        FakeJumpCloud(skew_ms=skew_min * MIN, page_size=50) as jc,
        CoralogixSink(api_key=CX_KEY) as sink,
    ):
        path = write_config(
            tmp_path,
            jc.url,
            sink.url,
            siem={"batch_size": 25},
            jumpcloud={"initial_days_back": days_back, "overlap_seconds": 120},
        )
        expected: Counter = Counter()
        if days_back:
            backlog = events_at(60, jc.now() - 1000, 15, seed=79)  # 15 minutes of JumpCloud time
            jc.add(*backlog)
            expected += keys(backlog)
        rc, err = run(path, capsys)
        assert rc == 0, err
        assert "the host clock differs from JumpCloud's" in err
        assert f"host_clock={'behind' if skew_min > 0 else 'ahead'}" in err
        for round_ in range(3):
            time.sleep(0.1)
            fresh = events_at(20, jc.now() - 5, 0.0008, seed=80 + round_)  # after the last run
            jc.add(*fresh)
            expected += keys(fresh)
            rc, err = run(path, capsys)
            assert rc == 0, err
            assert counts(err)["shipped"] == 20
        assert keys(sink.events()) == expected


# -- doubles ---------------------------------------------------------------------------------


def test_events_without_id_are_shipped_once_across_runs(tmp_path, capsys) -> None:
    with FakeJumpCloud(page_size=5) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        base = events_at(12, jc.now() - 1000, 2, seed=63)
        anonymous = [{k: v for k, v in e.items() if k != "id"} for e in base]
        jc.add(*anonymous)
        path = write_config(tmp_path, jc.url, sink.url, siem={"batch_size": 4})
        for _ in range(3):  # all inside the overlap window every time
            rc, err = run(path, capsys)
            assert rc == 0, err
        shipped = sink.events()
        assert len(shipped) == 12 and len(keys(shipped)) == 12, "an id-less event was resent"
        assert sorted(e["jc_timestamp"] for e in shipped) == sorted(e["timestamp"] for e in base)


def test_same_id_on_two_pages_with_a_slow_siem_is_shipped_once(tmp_path, capsys) -> None:
    with FakeJumpCloud(page_size=5) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        sink.inject_fault(None, count=-1, delay_s=0.3)  # every POST takes a while
        events = events_at(30, jc.now() - 1000, 2, seed=64)
        repeated = dict(events[1])
        jc.add(*events[:17], repeated, *events[17:])  # page 1 and again on page 4
        path = write_config(tmp_path, jc.url, sink.url, siem={"batch_size": 3})
        rc, err = run(path, capsys)
        assert rc == 0, err
        assert keys(sink.events()) == Counter(e["id"] for e in events)
        assert counts(err)["duplicates"] == 1


def test_siem_that_keeps_a_batch_and_drops_the_connection_gets_a_bounded_number_of_copies(
    tmp_path, capsys
) -> None:
    bodies: list[bytes] = []
    with (
        JumpCloudSimulator(api_key=JC_KEY) as jc,
        HostilePeer(
            lambda ex: bodies.append(ex.request.body)  # kept, then the connection closes
        ) as siem,
    ):
        events = events_at(30, now_ms() - 1000, 5, seed=65)
        err = failing_run(tmp_path, jc, events, siem.url, capsys, batch_size=10, within_s=10)
        assert len(bodies) == 3 and len(set(bodies)) == 1, "at most 3 copies of one batch"
        assert summary(err)["resent"] == "2" and summary(err)["status"] == "failed"
        assert "may hold 3 copies" in err
        err = resume_with_a_good_siem(tmp_path, jc.url, events, capsys, batch_size=10)
        assert summary(err)["resent"] == "0"


# -- stuck -------------------------------------------------------------------------------------


@pytest.mark.parametrize("age_s", [1, 1000])
def test_lock_held_too_long_is_loud(tmp_path, capsys, age_s: int) -> None:
    with JumpCloudSimulator(api_key=JC_KEY) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        path = write_config(tmp_path, jc.url, sink.url, run_time_budget_seconds=10)
        (tmp_path / "state").mkdir(mode=0o700)
        with open(tmp_path / "state" / "di2siem.lock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            held.write(f"424242 {now_ms() - age_s * 1000}\n")
            held.flush()
            rc, err = run(path, capsys)
        assert "holder_pid=424242" in err
        if age_s > 20:
            assert rc == 1 and "warning" in err and "looks stuck" in err
            assert "holder_age_s=100" in err
        else:
            assert rc == 0 and "another run holds the lock" in err


def _limited_run(path: Path, max_file_bytes: int) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return console_run(path, timeout=60, preexec_fn=limit)


@pytest.mark.parametrize("max_file_bytes", [1, 600])
def test_unwritable_state_fails_loudly_and_does_not_keep_sending(
    tmp_path, max_file_bytes: int
) -> None:
    """A state write that fails (here: the file size limit, as a full disk would) stops the
    run with exit 1 and one clear line; nothing more is sent than the one unrecorded batch."""
    with JumpCloudSimulator(api_key=JC_KEY) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        jc.add_events(events_at(100, now_ms() - 1000, 5, seed=66))
        path = write_config(tmp_path, jc.url, sink.url, siem={"batch_size": 20})
        for _ in range(2):
            result = _limited_run(path, max_file_bytes)
            assert result.returncode == 1, result.stderr
            assert "cannot write the state in state_dir" in result.stderr
            assert "file size limit" in result.stderr
        sent = len(sink.events())
        # preflight catches an empty-state write; otherwise one batch per run, never more
        assert sent == (0 if max_file_bytes == 1 else 40)
        assert not [n for n in os.listdir(tmp_path / "state") if n.endswith(".tmp")]


# -- leaked ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o770, 0o707])
def test_state_dir_writable_by_others_is_refused(tmp_path, capsys, mode: int) -> None:
    with JumpCloudSimulator(api_key=JC_KEY) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        jc.add_events(events_at(5, now_ms() - 1000, 1, seed=67))
        path = write_config(tmp_path, jc.url, sink.url)
        (tmp_path / "state").mkdir()
        os.chmod(tmp_path / "state", mode)
        rc, err = run(path, capsys)
        assert rc == 2 and err.count("\n") == 1
        assert "state_dir" in err and "writable by group or others" in err and "chmod 700" in err
        assert not sink.events() and jc.stats["requests"] == 0
        capsys.readouterr()
        assert main(["check", "--config", str(path)]) == 1  # check says so too
        out = capsys.readouterr().out
        assert "di2siem check state_dir: FAILED" in out and "chmod 700" in out


def test_state_temp_files_are_fresh_never_followed_and_cleaned(tmp_path, capsys) -> None:
    with JumpCloudSimulator(api_key=JC_KEY) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        jc.add_events(events_at(30, now_ms() - 1000, 1, seed=68))
        path = write_config(tmp_path, jc.url, sink.url, siem={"batch_size": 10})
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        victim = tmp_path / "victim"
        victim.write_text("precious")
        os.symlink(victim, state / ".state.json.tmp")  # the old fixed temp name
        (state / ".state.json.0123456789ab.tmp").write_text("left by a killed run")
        (state / "orgs").mkdir(mode=0o700)
        (state / "orgs" / ".0123456789ab.tmp").write_text("left by a killed run")
        rc, err = run(path, capsys)
        assert rc == 0, err
        assert victim.read_text() == "precious"
        assert not [n for n in os.listdir(state) if n.endswith(".tmp")]
        assert os.listdir(state / "orgs") == ["_default.json"]
        assert counts(err)["shipped"] == 30


# -- also decided: values JSON does not allow, one huge event ------------------------------


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_infinity_and_huge_integers_become_json_a_siem_takes(tmp_path, capsys) -> None:
    """Python's json reads NaN/Infinity and SIEMs refuse them (one such event would fail its
    batch forever): they are shipped as the strings "NaN"/"Infinity"/"-Infinity"; an integer
    too long for Python (would make the page unreadable, a stuck stream) as its digits; every
    other event on the page is still spliced verbatim."""
    bodies: list[bytes] = []

    def accept(ex: Exchange) -> None:
        bodies.append(ex.request.body)
        ex.reply(200, {}, headers={"Connection": "close"})

    with FakeJumpCloud(page_size=4) as jc, HostilePeer(accept) as siem:
        base = events_at(8, jc.now() - 1000, 1, seed=69)
        texts = [json.dumps(e, separators=(",", ":")) for e in base]
        huge = "9" * 5000
        texts[0] = texts[0][:-1] + ',"score":NaN}'  # first event of a page
        texts[2] = texts[2][:-1] + ',"ratio":Infinity,"low":-Infinity}'
        texts[5] = texts[5][:-1] + f',"count":{huge}}}'
        jc.add(*texts)
        path = write_config(tmp_path, jc.url, siem.url, siem={"batch_size": 100})
        rc, err = run(path, capsys)
        assert rc == 0, err
        shipped = [_strict(line) for body in bodies for line in body.decode().splitlines()]
        assert [e["id"] for e in shipped] == [e["id"] for e in base]
        assert shipped[0]["score"] == "NaN"
        assert (shipped[2]["ratio"], shipped[2]["low"]) == ("Infinity", "-Infinity")
        assert shipped[5]["count"] == huge
        for got, source in zip(shipped, base):  # nothing else changed
            extra = {"score", "ratio", "low", "count"}
            assert {k: v for k, v in got.items() if k not in extra | SHAPING_KEYS} == {
                k: v for k, v in source.items() if k not in SHAPING_KEYS
            }


def test_a_50_mb_event_is_skipped_without_copies_of_it(tmp_path) -> None:
    """Oversize is decided before shaping: peak memory stays near the page's own size
    (page text plus the decoded event), not several copies of it (it was 371 MB)."""
    with FakeJumpCloud() as jc, CoralogixSink(api_key=CX_KEY) as sink:
        base = events_at(50, jc.now() - 1000, 1, seed=71)
        big = dict(base[10], id="a" * 24, message="x" * 50_000_000)
        jc.add(*base[:10], big, *base[10:])
        del big
        path = write_config(tmp_path, jc.url, sink.url)
        for attempt in range(2):
            result = console_run(path)
            assert result.returncode == 0, result.stderr
            fields = summary(result.stderr)
            # reported once (id and size), remembered: the next run drops it as known
            assert fields["skipped"] == ("1" if attempt == 0 else "0")
            assert ("a" * 24 in result.stderr) == (attempt == 0)
            assert float(fields["peak_rss_mb"]) < 180
        assert keys(sink.events()) == Counter(e["id"] for e in base)
