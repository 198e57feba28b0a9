"""playbooks/status.yml, the fleet view: two "hosts" on this machine (connection local, each
its own install dir, config and state), one healthy, one whose SIEM refuses the key; and
playbooks/backfill.yml on such hosts, each backfilling its own orgs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SECRETS, Env, assert_no_secrets, legacy_config, recent_events

REPO = Path(__file__).resolve().parents[2]


def fake_host(env: Env, root: Path) -> dict[str, str]:
    """An install dir whose venv/bin/di2siem is this test's, and a config dir."""
    bin_dir = root / "opt" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "di2siem").symlink_to(Path(sys.executable).with_name("di2siem"))
    (root / "etc").mkdir()
    shutil.copy(env.path, root / "etc" / "config.json")
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "di2siem_install_dir": str(root / "opt"),
        "di2siem_config_dir": str(root / "etc"),
    }


def playbook(inventory: Path, *extra: str, name: str = "status.yml") -> subprocess.CompletedProcess:
    ansible = Path(sys.executable).with_name("ansible-playbook")
    if not ansible.exists():
        pytest.skip("ansible-playbook is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(ansible), "-i", str(inventory), str(REPO / "playbooks" / name), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )
    assert_no_secrets(result.stdout, result.stderr)
    return result


def test_fleet_table_fails_for_the_unhealthy_host(tmp_path: Path, jcsim, sink, capsys) -> None:
    good = Env(tmp_path / "good", jcsim, sink)
    bad = Env(tmp_path / "bad", jcsim, sink)
    hosts = {}
    for name, env in (("host-good", good), ("host-bad", bad)):
        env.tmp.mkdir()
        cfg = legacy_config(jcsim.url, sink.url)
        if env is bad:
            cfg["siem"]["headers"] = {"private_key": SECRETS[1] + "-not-the-key"}
        env.write(cfg)
        hosts[name] = fake_host(env, env.tmp / "host")
    jcsim.add_events(recent_events(20))
    assert good.run(capsys)[0] == 0
    assert bad.run(capsys)[0] == 1
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"children": {"di2siem": {"hosts": hosts}}}}))

    result = playbook(inventory)
    out = result.stdout
    assert result.returncode == 2, out + result.stderr  # a failed host
    table = [line for line in out.splitlines() if "host-good " in line or "host-bad " in line]
    good_row = next(line for line in table if "host-good " in line and "_default" in line)
    bad_row = next(line for line in table if "host-bad " in line and "_default" in line)
    assert "never" not in good_row and good_row.rstrip().rstrip('",').endswith("ok")
    assert "NOT HEALTHY: the last run failed | SIEM answered 403" in bad_row
    assert "di2siem on host-bad is NOT healthy" in out
    assert "failed=1" in out.split("PLAY RECAP")[1].split("host-bad")[1].splitlines()[0]
    assert "failed=0" in out.split("PLAY RECAP")[1].split("host-good")[1].splitlines()[0]

    result = playbook(inventory, "--limit", "host-good")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "host-bad" not in result.stdout


def test_backfill_playbook_each_host_its_own_orgs_reported(tmp_path: Path, sink) -> None:
    """Two hosts, one org each (their shares); a dry run (check mode) counts and ships
    nothing; the backfill ships each host's window once and reports it; run again, each
    host's finished job ships nothing."""
    from conftest import JC_KEY, ORG_A, ORG_B
    from di2siem.timeutil import now_ms
    from di2siem_sandbox import JumpCloudSimulator
    from di2siem_sandbox.events import generate_events

    with JumpCloudSimulator(api_key=JC_KEY, org_ids=[ORG_A, ORG_B]) as jc:
        end = now_ms() - 3_600_000
        for seed, org in enumerate((ORG_A, ORG_B)):
            jc.add_events(
                generate_events(30, end - 2 * 86_400_000, end, seed=seed, org=org), org=org
            )
        hosts = {}
        for name, org in (("host-a", ORG_A), ("host-b", ORG_B)):
            env = Env(tmp_path / name, jc, sink)
            env.tmp.mkdir()
            cfg = legacy_config(jc.url, sink.url)
            cfg["jumpcloud"]["org_ids"] = [org]
            env.write(cfg)
            hosts[name] = fake_host(env, env.tmp / "host")
        inventory = tmp_path / "hosts.json"
        inventory.write_text(json.dumps({"all": {"children": {"di2siem": {"hosts": hosts}}}}))
        window = ["-e", "di2siem_backfill_since=-3d", "-e", "di2siem_backfill_poll=1"]

        dry = playbook(inventory, *window, "--check", name="backfill.yml")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert f"org={ORG_A} events=30" in dry.stdout and f"org={ORG_B} events=30" in dry.stdout
        assert sink.events() == []
        result = playbook(inventory, *window, name="backfill.yml")
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(e["organization"] for e in sink.events()) == [ORG_A] * 30 + [ORG_B] * 30
        assert result.stdout.count("backfill finished") == 2
        assert "changed=1" in result.stdout.split("PLAY RECAP")[1]
        again = playbook(inventory, *window, name="backfill.yml")
        assert again.returncode == 0 and len(sink.events()) == 60
        assert again.stdout.count("finished at") == 2
