"""``di2siem state export|import``: an org moves between hosts with its cursor and recent ids,
so the union of both hosts' deliveries holds every event exactly once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import JC_KEY, Env, assert_no_secrets, legacy_config
from di2siem import __version__
from di2siem.cli import main
from di2siem.state.handoff import FORMAT
from di2siem.state.lock import InstanceLock
from di2siem.state.reading import snapshot
from di2siem.timeutil import now_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import generate_events

ORG_A, ORG_B = "5f1b0c2e8d3a4b0012345678", "6a2c1d3f9e4b5c0087654321"
MIN = 60_000


@pytest.fixture
def msp() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=[ORG_A, ORG_B]) as sim:
        yield sim


def _host(tmp: Path, name: str, msp: JumpCloudSimulator, sink, orgs: list[str]) -> Env:
    (tmp / name).mkdir()
    env = Env(tmp / name, msp, sink)
    cfg = legacy_config(msp.url, sink.url, batch_size=7)
    cfg["jumpcloud"]["org_ids"] = orgs
    env.write(cfg)
    return env


def state_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["state", *args])
    out, err = capsys.readouterr()
    assert_no_secrets(out, err)
    return rc, out, err


def test_an_org_moves_between_hosts_exactly_once(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    end = now_ms() - 1000
    first = generate_events(60, end - 20 * MIN, end - 2 * MIN, seed=1, org=ORG_A)
    msp.add_events(first, org=ORG_A)
    old = _host(tmp_path, "old", msp, sink, [ORG_A, ORG_B])
    assert old.run(capsys)[0] == 0
    # the old owner stops serving the org (its config no longer lists it), then exports
    old.edit(lambda cfg: cfg["jumpcloud"].update(org_ids=[ORG_B]))
    handoff = tmp_path / "a.json"
    rc, out, err = state_cli(
        capsys, "export", "--config", str(old.path), "--org", ORG_A, "--output", str(handoff)
    )
    assert rc == 0 and out == "" and f"org {ORG_A}: exported cursor" in err
    assert "floor" not in err and "None" not in err  # no floor: none shown
    doc = json.loads(handoff.read_text())
    assert (doc["format"], doc["version"], doc["org"]) == (FORMAT, 1, ORG_A)
    assert doc["di2siem_version"] == __version__ and doc["cursor"] == first[-1]["timestamp"]
    assert set(doc["recent_ids"]) <= {e["id"] for e in first} and doc["recent_ids"]
    assert oct(handoff.stat().st_mode & 0o777) == "0o600"

    later = generate_events(25, end - 90_000, end, seed=2, org=ORG_A)  # after the handoff
    msp.add_events(later, org=ORG_A)
    new = _host(tmp_path, "new", msp, sink, [ORG_A])
    new.state_dir.mkdir(mode=0o700)
    rc, _, err = state_cli(capsys, "import", "--config", str(new.path), str(handoff))
    assert rc == 0 and f"org {ORG_A}: imported cursor {first[-1]['timestamp']}" in err
    assert "(was cursor none)" in err and "None" not in err
    assert new.run(capsys)[0] == 0
    copies = Counter(sink_ids(sink))
    assert set(copies) == {e["id"] for e in first + later} and set(copies.values()) == {1}
    # stdout export: the same document
    rc, out, _ = state_cli(capsys, "export", "--config", str(new.path), "--org", ORG_A)
    assert rc == 0 and json.loads(out)["cursor"] == later[-1]["timestamp"]


def sink_ids(sink) -> list[str]:
    return [r["record"]["id"] for r in sink.received]


def test_import_refuses_wrong_files_in_one_line_and_changes_nothing(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    msp.add_events(generate_events(10, now_ms() - 5 * MIN, now_ms() - 1000, org=ORG_A), org=ORG_A)
    host = _host(tmp_path, "h", msp, sink, [ORG_A])
    assert host.run(capsys)[0] == 0
    export = tmp_path / "a.json"
    assert (
        state_cli(
            capsys, "export", "--config", str(host.path), "--org", ORG_A, "--output", str(export)
        )[0]
        == 0
    )
    doc = json.loads(export.read_text())
    before = snapshot(str(host.state_dir))
    bad = tmp_path / "bad.json"
    cases = {
        "not JSON": ("{", "is not JSON"),
        "other format": (json.dumps({**doc, "format": "x"}), "is not a di2siem state export"),
        "future version": (json.dumps({**doc, "version": 2}), "format version 2"),
        "bad cursor": (json.dumps({**doc, "cursor": "soon"}), "cursor is not an RFC 3339"),
        "single org": (json.dumps({**doc, "org": "_default"}), "single-org stream"),
    }
    for text, expected in cases.values():
        bad.write_text(text)
        rc, out, err = state_cli(capsys, "import", "--config", str(host.path), str(bad))
        assert rc == 2 and expected in err and len(err.splitlines()) == 1 and out == "", err
    rc, _, err = state_cli(
        capsys, "import", "--config", str(host.path), "--org", ORG_B, str(export)
    )
    assert rc == 2 and f"holds org {ORG_A}, not --org {ORG_B}" in err
    rc, _, err = state_cli(capsys, "export", "--config", str(host.path), "--org", ORG_B)
    assert rc == 2 and "has no state" in err and len(err.splitlines()) == 1
    assert snapshot(str(host.state_dir)) == before


def test_import_never_moves_a_cursor_back_silently(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    end = now_ms() - 1000
    msp.add_events(generate_events(10, end - 10 * MIN, end - 5 * MIN, org=ORG_A), org=ORG_A)
    host = _host(tmp_path, "h", msp, sink, [ORG_A])
    assert host.run(capsys)[0] == 0
    export = tmp_path / "a.json"
    args = ("export", "--config", str(host.path), "--org", ORG_A, "--output", str(export))
    assert state_cli(capsys, *args)[0] == 0
    newer = generate_events(5, end - MIN, end, seed=9, org=ORG_A)
    msp.add_events(newer, org=ORG_A)
    assert host.run(capsys)[0] == 0
    before = snapshot(str(host.state_dir))
    rc, _, err = state_cli(capsys, "import", "--config", str(host.path), str(export))
    assert rc == 2 and "this host's state is newer" in err and "nothing changed" in err
    assert snapshot(str(host.state_dir)) == before
    rc, _, err = state_cli(capsys, "import", "--config", str(host.path), "--force", str(export))
    assert rc == 0 and "went BACK" in err
    state = snapshot(str(host.state_dir))["orgs"][ORG_A]
    assert state["cursor"] == json.loads(export.read_text())["cursor"]
    # the newer ids stay remembered: going back re-reads them but sends none twice
    assert {e["id"] for e in newer} <= set(state["recent_ids"])
    shipped = len(sink.received)
    assert host.run(capsys)[0] == 0 and len(sink.received) == shipped


def test_state_commands_wait_for_the_run_lock(
    tmp_path: Path, msp: JumpCloudSimulator, sink, capsys
) -> None:
    msp.add_events(generate_events(3, now_ms() - MIN, now_ms() - 1000, org=ORG_A), org=ORG_A)
    host = _host(tmp_path, "h", msp, sink, [ORG_A])
    assert host.run(capsys)[0] == 0
    with InstanceLock(str(host.state_dir)):
        rc, out, err = state_cli(
            capsys, "export", "--config", str(host.path), "--org", ORG_A, "--wait", "0.3"
        )
        assert rc == 1 and "a run holds the lock" in err and out == ""
        rc, _, err = state_cli(capsys, "import", "--config", str(host.path), "/nonexistent")
        assert rc == 2 and "No such file" in err
    rc, out, _ = state_cli(capsys, "export", "--config", str(host.path), "--org", ORG_A)
    assert rc == 0 and json.loads(out)["org"] == ORG_A
    assert state_cli(capsys, "export", "--config", str(host.path))[0] == 2  # --org missing
    assert state_cli(capsys)[0] == 2
