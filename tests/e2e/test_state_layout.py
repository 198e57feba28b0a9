"""One state file per org: the migration from the single state.json of earlier versions (a
real one, written by di2siem 0.x before this layout), also under kill -9."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import JC_KEY, Env, counts, kill_if_running, legacy_config, start_run
from di2siem.state.layout import MIGRATED_FILE
from di2siem.state.reading import snapshot
from di2siem.state.store import StateStore
from di2siem.timeutil import format_ms, now_ms, parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import generate_events

DATA = Path(__file__).parent / "data"
# tests/e2e/data/state_v1.json: written by the previous version (one state.json for every org),
# shipping these very events: org A 150, org B 90 events between 01:00 and 01:30 (seeds 11, 12)
ORG_A, ORG_B = "5f1b0c2e8d3a4b0012345678", "6a2c1d3f9e4b5c0087654321"
OLD_START, OLD_END = "2026-11-27T01:00:00Z", "2026-11-27T01:30:00Z"


@pytest.fixture
def msp() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=[ORG_A, ORG_B]) as sim:
        yield sim


def test_migrates_a_state_json_of_the_previous_version(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    env = Env(tmp_path, msp, sink)
    old = {ORG_A: generate_events(150, OLD_START, OLD_END, seed=11, org=ORG_A)}
    old[ORG_B] = generate_events(90, OLD_START, OLD_END, seed=12, org=ORG_B)
    legacy = json.loads((DATA / "state_v1.json").read_text())
    new = {}
    for n, org in enumerate((ORG_A, ORG_B)):
        msp.add_events(old[org], org=org)
        after = parse_ms(legacy["orgs"][org]["cursor"]) + 1000
        new[org] = generate_events(12, after, max(after, now_ms() - 1000), seed=21 + n, org=org)
        msp.add_events(new[org], org=org)
    env.state_dir.mkdir(mode=0o700)
    shutil.copy(DATA / "state_v1.json", env.legacy_state_file)
    cfg = legacy_config(msp.url, sink.url)
    cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
    env.write(cfg)

    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert "state migrated to one file per org orgs=2" in err
    # the cursors and recent ids moved along: only the new events are shipped, once each
    shipped = env.shipped_ids()
    assert sorted(shipped) == sorted(e["id"] for org in new for e in new[org])
    assert not env.legacy_state_file.exists()
    assert (env.state_dir / MIGRATED_FILE).read_bytes() == (DATA / "state_v1.json").read_bytes()
    orgs = env.state()["orgs"]
    for org in (ORG_A, ORG_B):
        assert orgs[org]["cursor"] == new[org][-1]["timestamp"]
        totals = orgs[org]["ops"]["totals"]
        assert totals["shipped"] == legacy["orgs"][org]["ops"]["totals"]["shipped"] + 12
    rc, out, _ = env.run(capsys, "--json", command="status")
    assert rc == 0 and {o["shipped_total"] for o in json.loads(out)["orgs"]} == {162, 102}
    rc, _, err = env.run(capsys)  # the next run: nothing new, nothing migrated
    assert rc == 0 and "migrated" not in err and len(env.shipped_ids()) == 24


def _legacy_state(count: int) -> dict:
    base = parse_ms(OLD_END)
    orgs = {}
    for n in range(count):
        ids = {f"{n:06d}{i:018d}": base - i * 1000 for i in range(20)}
        orgs[f"{n:024x}"] = {
            "cursor": format_ms(base + n),
            "floor": format_ms(base - 600_000) if n % 3 == 0 else None,
            "served": format_ms(base),
            "recent_ids": ids,
            "ops": {"totals": {"shipped": n}, "last_status": "ok"},
        }
    return {"version": 1, "orgs": orgs}


def _org_files(orgs_dir: Path) -> int:
    try:
        return sum(1 for e in os.scandir(orgs_dir) if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def test_kill_9_during_the_migration_loses_nothing(tmp_path: Path) -> None:
    legacy = _legacy_state(400)
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    legacy_file = state_dir / "state.json"
    legacy_file.write_text(json.dumps(legacy))
    first = next(iter(legacy["orgs"]))
    cfg = legacy_config("http://127.0.0.1:9", "http://127.0.0.1:9")  # nobody listens
    cfg["jumpcloud"]["org_ids"] = [first]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**cfg, "state_dir": str(state_dir), "max_retries": 0}))
    config.chmod(0o600)
    rng = random.Random(7)
    orgs_dir = state_dir / "orgs"
    partial = 0
    for _ in range(5):
        if not legacy_file.exists():
            break
        target = rng.randint(1, len(legacy["orgs"]) - 1)  # org files written when killed
        proc = start_run(config)
        while proc.poll() is None and _org_files(orgs_dir) < target:
            time.sleep(0.002)
        if kill_if_running(proc):
            partial += legacy_file.exists()
    assert partial >= 2, "kills did not land inside the migration"
    store = StateStore(str(state_dir))
    store.load()  # finishes what the killed runs began
    orgs = snapshot(str(state_dir))["orgs"]
    assert set(orgs) == set(legacy["orgs"])
    for name, want in legacy["orgs"].items():
        got = orgs[name]
        assert (got["cursor"], got["floor"], got["recent_ids"]) == (
            want["cursor"],
            want["floor"],
            want["recent_ids"],
        ), name
        if name != first:  # the only org a run may have served since
            assert got["ops"] == want["ops"]
    assert not legacy_file.exists() and (state_dir / MIGRATED_FILE).exists()
    assert not [p for p in (state_dir / "orgs").iterdir() if p.name.startswith(".")]


def test_a_second_run_of_a_migrated_state_changes_nothing_else(env: Env, capsys) -> None:
    env.jc.add_events(generate_events(30, now_ms() - 600_000, now_ms() - 1000, seed=3))
    env.write()
    assert env.run(capsys)[0] == 0
    before = snapshot(str(env.state_dir))
    rc, _, err = env.run(capsys)
    assert rc == 0 and counts(err)["shipped"] == 0
    after = snapshot(str(env.state_dir))
    assert after["orgs"]["_default"]["cursor"] == before["orgs"]["_default"]["cursor"]
    assert sorted(p.name for p in env.state_dir.iterdir()) == ["di2siem.lock", "orgs"]
