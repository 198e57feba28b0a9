"""The installed console script in subprocesses: kill -9 at random instants, overlapping runs,
secrets absent from argv and output."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter

from conftest import SECRETS, Env, assert_no_secrets, counts, di2siem_executable, legacy_config
from di2siem.sandbox.events import generate_events
from di2siem.timeutil import now_ms

BATCH = 20


def _start(env: Env) -> subprocess.Popen:
    return subprocess.Popen(
        [di2siem_executable(), "run", "--config", str(env.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_at_random_instants_loses_nothing(env: Env) -> None:
    end = now_ms() - 1000
    events = generate_events(3000, end - 30 * 60_000, end, seed=5)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url, batch_size=BATCH)
    cfg["jumpcloud"]["page_size"] = 400
    env.write(cfg)
    env.cx.inject_fault(None, count=-1, delay_s=0.05)  # every POST takes a while
    rng = random.Random(1234)
    kills = 0
    for _ in range(15):
        proc = _start(env)
        time.sleep(rng.uniform(0.3, 0.8))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        out, err = proc.communicate(timeout=30)
        assert_no_secrets(out, err)
    env.cx.clear_faults()
    rc, out, err = env.proc()
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
    first = _start(env)
    time.sleep(0.4)  # the first run holds the lock by now
    second = _start(env)
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
    proc = _start(env)
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
