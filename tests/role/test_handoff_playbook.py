"""The handoff steps of playbooks/handoff.yml (the role's tasks/handoff_plan.yml and
tasks/handoff_move.yml) between two "hosts" on this machine (connection local, each its own
config and state, the real di2siem and the simulators): the org that changes hosts moves with
its cursor, an org nobody served starts from di2siem_handoff_days_back with a WARNING, and
the union of both hosts' deliveries holds every event exactly once. The role's own deploy
step between them (play 2 of handoff.yml) is stood in for by writing each host's new config."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import JC_KEY, Env, assert_no_secrets
from di2siem.timeutil import now_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import generate_events
from test_handoff import _host as host_env
from test_shard import ANSIBLE_PLAYBOOK, ansible_env, shard

ORGS = [f"5f1b0c2e8d3a4b00123456{i:02x}" for i in range(8)]
HOSTS = ["vm-a", "vm-b"]
MIN = 60_000

PLAY = """---
- name: Plan
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Plan this host's part
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: handoff_plan.yml

- name: Stand-in for the role's deploy (play 2 of handoff.yml)
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Write the new configuration
      ansible.builtin.copy:
        src: "{{{{ __next_config }}}}"
        dest: "{{{{ di2siem_config_dir }}}}/config.json"
        mode: "0600"

- name: Move the cursors
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Export, carry, import
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: handoff_move.yml
"""


@pytest.fixture
def msp():
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=ORGS) as sim:
        yield sim


def fake_install(env: Env) -> dict[str, str]:
    bin_dir = env.tmp / "opt" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "di2siem").symlink_to(Path(sys.executable).with_name("di2siem"))
    env.state_dir.mkdir(exist_ok=True)
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "di2siem_install_dir": str(env.tmp / "opt"),
        "di2siem_config_dir": str(env.tmp),
        "di2siem_state_dir": str(env.state_dir),
        "di2siem_user": "root",
        "di2siem_group": "root",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="runuser -u needs root")
def test_handoff_moves_cursors_and_ships_every_event_once(tmp_path: Path, msp, sink, capsys):
    owner = shard.shard_assignment(ORGS, HOSTS)
    share = {h: [o for o in ORGS if owner[o] == h] for h in HOSTS}
    assert len(share["vm-b"]) >= 2, share  # one moves with its cursor, one nobody served
    orphan = share["vm-b"][-1]
    expected: set[str] = set()

    def publish(seed: int, start_ago: int, end_ago: int) -> None:
        end = now_ms()
        for i, org in enumerate(ORGS):
            events = generate_events(6, end - start_ago, end - end_ago, seed=seed + i, org=org)
            msp.add_events(events, org=org)
            expected.update(event["id"] for event in events)

    publish(0, 30 * MIN, 5 * MIN)

    # before: vm-a serves every org but the orphan, vm-b runs nothing
    old = host_env(tmp_path, "vm-a", msp, sink, [o for o in ORGS if o != orphan])
    new = host_env(tmp_path, "vm-b", msp, sink, share["vm-b"])
    assert old.run(capsys)[0] == 0
    new.path.rename(new.tmp / "config.next.json")  # nothing deployed on vm-b yet
    after = json.loads(old.path.read_text())
    after["jumpcloud"]["org_ids"] = share["vm-a"]
    (old.tmp / "config.next.json").write_text(json.dumps(after))
    hosts = {}
    for name, env in (("vm-a", old), ("vm-b", new)):
        hosts[name] = {**fake_install(env), "__next_config": str(env.tmp / "config.next.json")}
    controller = tmp_path / "controller"
    inventory = tmp_path / "hosts.json"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "fleet": {
                            "hosts": hosts,
                            "vars": {
                                "di2siem_shard_group": "fleet",
                                "di2siem_jumpcloud_org_ids": ORGS,
                                "di2siem_handoff_dir": str(controller),
                                "di2siem_handoff_days_back": -1,
                            },
                        }
                    }
                }
            }
        )
    )
    play = tmp_path / "handoff.yml"
    play.write_text(PLAY.format())
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(play)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ansible_env(tmp_path),
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert_no_secrets(out, result.stderr)
    moved = [o for o in share["vm-b"] if o != orphan]
    assert f"vm-b stops nothing; gives nothing; takes {', '.join(share['vm-b'])}" in out
    assert f"vm-a stops {', '.join(moved)}; gives {', '.join(moved)}; takes nothing" in out
    assert f"WARNING: vm-b starts org {orphan} from di2siem_handoff_days_back=-1 days" in out
    assert out.count("WARNING: vm-b starts org") == 1
    # the state itself is never printed; the controller keeps nothing after the imports
    assert '"recent_ids"' not in out
    assert stat.S_IMODE(controller.stat().st_mode) == 0o700
    assert list(controller.iterdir()) == []

    # after: each host runs its share; new events for every org
    old.path.write_text((old.tmp / "config.next.json").read_text())
    new.path.write_text((new.tmp / "config.next.json").read_text())
    publish(100, 3 * MIN, 1000)
    assert old.run(capsys)[0] == 0
    assert new.run(capsys)[0] == 0
    shipped = Counter(event["id"] for event in sink.events())
    assert set(shipped) == expected
    assert [i for i, n in shipped.items() if n != 1] == []
