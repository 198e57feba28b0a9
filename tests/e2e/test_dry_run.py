"""`di2siem run --dry-run [--limit N]`: the first N records the next run would ship, printed
exactly as the intake receives them, with nothing shipped and nothing written."""

from __future__ import annotations

import json

from conftest import Env, counts, legacy_config, recent_events


def test_prints_what_the_next_run_sends_and_writes_nothing(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(40))
    cfg = legacy_config(env.jc.url, env.cx.url, batch_size=5)
    env.write({**cfg, "siem": {**cfg["siem"], "format": "json_array"}})
    rc, out, err = env.run(capsys, "--dry-run", "--limit", "7")
    assert rc == 0, err
    assert not env.state_dir.exists(), "a dry run writes nothing, not even the lock file"
    assert env.cx.received == [] and env.jc.stats["requests"] >= 1
    bodies = [json.loads(line) for line in out.splitlines()]
    assert [len(b) for b in bodies] == [5, 2]  # the intake's batches, cut at the limit
    assert err.count('request="POST ') == 2 and "records=7" in err
    # the real run's first seven records are these, byte for byte as JSON
    rc, _, err = env.run(capsys)
    assert rc == 0 and counts(err)["shipped"] == 40
    shipped = [r["record"] for r in env.cx.received[:7]]
    assert shipped == [record for body in bodies for record in body]
    # with the state, the dry run starts where the next run would: nothing new to show
    before = sorted(p.read_bytes() for p in (env.state_dir / "orgs").iterdir())
    rc, out, err = env.run(capsys, "--dry-run")
    assert rc == 0 and out == "" and "records=0" in err
    assert sorted(p.read_bytes() for p in (env.state_dir / "orgs").iterdir()) == before


def test_limit_must_be_a_positive_count(env: Env, capsys) -> None:
    env.write()
    rc, out, err = env.run(capsys, "--dry-run", "--limit", "0")
    assert rc == 2 and "--limit" in err and out == ""
