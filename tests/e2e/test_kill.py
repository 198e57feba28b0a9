"""The installed console script in subprocesses: kill -9 at random instants, overlapping runs,
secrets absent from argv and output."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter

from conftest import (
    FAST,
    SECRETS,
    Env,
    assert_no_secrets,
    console_run,
    counts,
    kill_at_random,
    kill_if_running,
    legacy_config,
    start_run,
)
from di2siem.timeutil import now_ms
from di2siem_sandbox.events import format_ts, generate_events
from hostile import Exchange, HostilePeer
from hostile_jumpcloud import FakeJumpCloud, keys

BATCH = 20


def test_kill_9_at_random_instants_loses_nothing(env: Env) -> None:
    end = now_ms() - 1000
    events = generate_events(3000, end - 30 * 60_000, end, seed=5)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url, batch_size=BATCH)
    cfg["jumpcloud"]["page_size"] = 400
    env.write(cfg)
    env.cx.inject_fault(None, count=-1, delay_s=0.05)  # every POST takes a while
    kills = kill_at_random(env.path, rounds=15, seed=1234, low=0.3, high=0.8)
    env.cx.clear_faults()
    rc, _, err = env.proc()
    assert rc == 0, err
    ids = env.shipped_ids()
    assert set(ids) == {e["id"] for e in events}, "an event was lost"
    doubled = len(ids) - len(set(ids))
    assert kills >= 12  # the loop really killed runs mid-flight
    assert doubled <= kills * BATCH, f"{doubled} duplicates after {kills} kills"


def test_no_kill_no_duplicates_and_exit_codes(env: Env) -> None:
    end = now_ms() - 1000
    events = generate_events(700, end - 10 * 60_000, end, seed=6)
    env.jc.add_events(events)
    env.write(legacy_config(env.jc.url, env.cx.url, batch_size=BATCH))
    for _ in range(3):
        rc, _, err = env.proc()
        assert rc == 0, err
    ids = env.shipped_ids()
    assert len(ids) == len(set(ids)) == 700
    env.jc.inject_fault(401, count=-1)
    rc, _, err = env.proc()
    assert rc == 1 and "check jumpcloud.api_key" in err


def test_overlapping_runs_one_exits_0_with_the_lock_message(env: Env) -> None:
    end = now_ms() - 1000
    events = generate_events(400, end - 10 * 60_000, end, seed=7)
    env.jc.add_events(events)
    env.write(legacy_config(env.jc.url, env.cx.url, batch_size=BATCH))
    env.cx.inject_fault(None, count=-1, delay_s=0.1)
    first = start_run(env.path)
    time.sleep(0.4)  # the first run holds the lock by now
    second = start_run(env.path)
    out2, err2 = second.communicate(timeout=60)
    out1, err1 = first.communicate(timeout=60)
    assert_no_secrets(out1, err1, out2, err2)
    assert second.returncode == 0 and "another run holds the lock" in err2
    assert first.returncode == 0, err1
    assert counts(err1)["shipped"] == 400
    ids = env.shipped_ids()
    assert len(ids) == len(set(ids)) == 400
    assert not Counter(ids) - Counter(set(ids))


def test_secrets_absent_from_proc_cmdline_and_environ_of_a_run(env: Env) -> None:
    end = now_ms() - 1000
    env.jc.add_events(generate_events(200, end - 60_000, end, seed=8))
    env.write(legacy_config(env.jc.url, env.cx.url, batch_size=10))
    env.cx.inject_fault(None, count=-1, delay_s=0.05)
    proc = start_run(env.path)
    try:
        seen = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/cmdline", "rb") as fh:
                    seen += fh.read()
                with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                    seen += fh.read()
            except OSError:
                break
            time.sleep(0.05)
        assert b"run\x00--config" in seen
        for secret in SECRETS:
            assert secret.encode() not in seen
    finally:
        proc.kill() if proc.poll() is None else None
        out, err = proc.communicate(timeout=30)
        assert_no_secrets(out, err)


def test_debug_logging_and_tracebacks_stay_redacted(env: Env) -> None:
    end = now_ms() - 1000
    env.jc.add_events(generate_events(5, end - 60_000, end, seed=9))
    cfg = legacy_config(env.jc.url, env.cx.url)
    env.write(cfg, log_level="debug")
    env.cx.inject_fault(400, count=-1, body={"echo": f"key was {SECRETS[1]}"})
    rc, _, err = env.proc()  # the runner asserts no secret in out/err
    assert rc == 1 and "[redacted]" in err
    assert os.path.exists(env.state_dir)


class FlakySiem:
    """A SIEM that misbehaves at random (seeded): refuses bodies over 8 KB with 413 (its limit
    is below siem.max_batch_bytes), answers 503, keeps a batch and drops the connection, or
    answers slowly. Keeps what it accepted, and counts the events it kept unanswered (each
    such batch may legitimately arrive again)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.kept: list[dict] = []
        self.kept_unanswered = 0
        self.good = False
        self.lock = threading.Lock()
        self.peer = HostilePeer(self._behave)

    def _behave(self, ex: Exchange) -> None:
        close = {"Connection": "close"}
        events = [json.loads(line) for line in ex.request.body.decode().splitlines() if line]
        with self.lock:
            roll = 0.0 if self.good else self.rng.random()
        if len(ex.request.body) > 8_000:
            return ex.reply(413, headers=close)
        if roll > 0.85:
            return ex.reply(503, headers=close)
        with self.lock:
            self.kept.extend(events)
            if roll > 0.75:
                self.kept_unanswered += len(events)
                return  # kept, then the connection closes without an answer
        time.sleep(0.2 if roll > 0.6 else 0.02)
        ex.reply(200, {}, headers=close)


def test_kill_9_with_hostile_peers_loses_nothing(tmp_path) -> None:
    """kill -9 at random instants while JumpCloud serves future-stamped, untimed and id-less
    events and the SIEM splits, fails, keeps-and-drops and stalls at random: every event
    arrives, and the only copies are the batches in flight at a kill or kept unanswered."""
    with FakeJumpCloud(page_size=300) as jc, FlakySiem(seed=99).peer as siem_peer:
        siem: FlakySiem = siem_peer.behave.__self__
        events = generate_events(600, jc.now() - 20 * 60_000, jc.now() - 1000, seed=12)
        for index in range(0, 600, 50):
            e = events[index]
            if index % 150 == 0:
                events[index] = {k: v for k, v in e.items() if k != "id"}
            elif index % 150 == 50:
                events[index] = dict(e, timestamp=format_ts(jc.now() + 3_600_000))
            elif index % 150 == 100:
                events[index] = dict(e, timestamp="not a time")
        jc.add(*events)
        cfg = legacy_config(jc.url, siem_peer.url, batch_size=BATCH)
        cfg = {**cfg, **FAST, "state_dir": str(tmp_path / "state")}
        path = tmp_path / "config.json"
        path.write_text(json.dumps(cfg))
        os.chmod(path, 0o600)
        rng = random.Random(4321)
        kills = 0
        for _ in range(10):
            proc = start_run(path)
            seen = len(siem_peer.requests())
            started = time.monotonic()
            while (
                len(siem_peer.requests()) == seen
                and proc.poll() is None
                and time.monotonic() - started < 20
            ):
                time.sleep(0.01)  # kill only once it talks to the SIEM: mid-flight
            time.sleep(rng.uniform(0, 0.6))
            kills += kill_if_running(proc)
        before_good = len(siem.kept)
        with siem.lock:
            siem.good = True
        for _ in range(2):
            result = console_run(path)
            assert result.returncode == 0, result.stderr
        delivered = keys(siem.kept)
        assert set(delivered) == set(keys(events)), "an event was lost"
        doubled = sum(delivered.values()) - len(delivered)
        allowed = kills * BATCH + siem.kept_unanswered
        assert kills >= 6  # the loop really killed runs mid-flight
        assert doubled <= allowed, f"{doubled} copies; kills={kills} kept={siem.kept_unanswered}"
        assert before_good >= 2 * BATCH, "the hostile runs made progress of their own"
        print(f"kill loop: kills={kills} copies={doubled} allowed={allowed} kept={before_good}")
