"""di2siem_instance: several collectors on one VM. The role's names and paths carry the
instance's suffix (config, state, log, cron entry, logrotate rule, systemd units, metrics file),
the default instance keeps today's names, and removing one instance leaves the other's files
and the shared install until the last instance goes.

The uninstall test runs the role itself on this machine (connection local, root) with every
path in a scratch directory and a service user that does not exist, under instance names no
real install uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_shard import ANSIBLE_PLAYBOOK, ansible_env

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "di2siem"
TEMPLATES = ("config.json", "di2siem.service", "di2siem.timer", "logrotate")

RENDER = """---
- name: Render the role's templates for one instance
  hosts: local
  gather_facts: false
  tasks:
    - name: Names and paths
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: paths.yml
        public: true
    - name: Organisations
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: shard.yml
    - name: Render
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{role}/templates/' ~ item ~ '.j2') }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}-{{{{ item }}}}"
        mode: "0600"
      loop: {templates}
    - name: Facts
      ansible.builtin.copy:
        content: >-
          {{{{ {{'name': __di2siem_name, 'config': __di2siem_config_file,
                'state': __di2siem_state_dir, 'log': __di2siem_log_file}} | to_json }}}}
        dest: "{out}/{{{{ inventory_hostname }}}}-facts.json"
        mode: "0600"
"""


def playbook(
    tmp_path: Path, text: str, hosts: dict[str, dict], *extra: str
) -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts.json"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    members = {name: {**local, **host_vars} for name, host_vars in hosts.items()}
    inventory.write_text(
        json.dumps({"all": {"children": {"local": {"hosts": members}}}}), encoding="utf-8"
    )
    play = tmp_path / "play.yml"
    play.write_text(text, encoding="utf-8")
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(play), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=ansible_env(tmp_path),
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    """{host: (facts, {template: text})} for the default instance and the instance eu2."""
    tmp_path = tmp_path_factory.mktemp("instances")
    out = tmp_path / "out"
    out.mkdir()
    text = RENDER.format(role=ROLE, out=out, templates=json.dumps(list(TEMPLATES)))
    common = {
        "di2siem_jumpcloud_api_key": "k",
        "di2siem_coralogix_api_key": "c",
        "di2siem_coralogix_region": "EU1",
        "di2siem_metrics_textfile_dir": "/var/lib/node_exporter",
    }
    hosts = {"default": common, "eu2": {**common, "di2siem_instance": "eu2"}}
    result = playbook(tmp_path, text, hosts)
    assert result.returncode == 0, result.stdout + result.stderr
    return {
        host: (
            json.loads((out / f"{host}-facts.json").read_text(encoding="utf-8")),
            {name: (out / f"{host}-{name}").read_text(encoding="utf-8") for name in TEMPLATES},
        )
        for host in hosts
    }


@pytest.mark.parametrize(("host", "suffix"), [("default", ""), ("eu2", "-eu2")])
def test_names_and_paths_carry_the_instance(rendered, host: str, suffix: str) -> None:
    """The default instance keeps today's names; eu2 suffixes what it owns."""
    facts, files = rendered[host]
    assert facts == {
        "name": f"di2siem{suffix}",
        "config": f"/etc/di2siem/config{suffix}.json",
        "state": f"/var/lib/di2siem{suffix}",
        "log": f"/var/log/di2siem/di2siem{suffix}.log",
    }
    config = json.loads(files["config.json"])
    assert config["state_dir"] == f"/var/lib/di2siem{suffix}"
    assert config["metrics_file"] == f"/var/lib/node_exporter/di2siem{suffix}.prom"
    assert config["credentials_file"] == f"/etc/di2siem/credentials{suffix}.json"
    service = files["di2siem.service"].splitlines()
    assert f"EnvironmentFile=/etc/di2siem/environment{suffix}" in service
    assert f"StateDirectory=di2siem{suffix}" in service
    assert f"ReadWritePaths=/var/lib/di2siem{suffix}" in service
    run = f"ExecStart=/opt/di2siem/venv/bin/di2siem run --config /etc/di2siem/config{suffix}.json"
    assert run in service
    assert f"Unit=di2siem{suffix}.service" in files["di2siem.timer"].splitlines()
    # its own log only: two instances' rules never rotate one file twice
    assert f"/var/log/di2siem/di2siem{suffix}.log {{" in files["logrotate"].splitlines()


# the uninstall phase as an operator would run it alone (the role's always-tagged tasks too)
TAGS = ("--tags", "di2siem_uninstall")
UNINSTALL = """---
- name: Remove one instance after the other (one VM, two inventory entries, serial 1)
  hosts: local
  gather_facts: false
  serial: 1
  roles:
    - role: di2siem
  post_tasks:
    - name: List what is left
      tags: always
      ansible.builtin.find:
        paths: "{root}"
        recurse: true
        file_type: any
      register: __left
    - name: Write it down
      tags: always
      ansible.builtin.copy:
        content: "{{{{ __left.files | map(attribute='path') | list | to_json }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
"""


def fake_install(root: Path, instances: list[str]) -> dict[str, str]:
    """Two instances' files in a scratch tree; the role variables that point at it."""
    paths = {
        "di2siem_config_dir": root / "etc",
        "di2siem_install_dir": root / "opt",
        "di2siem_log_dir": root / "log",
        "di2siem_state_dir": root / "lib" / "di2siem",
    }
    (root / "opt" / "venv" / "bin").mkdir(parents=True)
    for directory in paths.values():
        directory.mkdir(parents=True, exist_ok=True)
    for name in instances:
        (root / "etc" / f"config-{name}.json").write_text("{}", encoding="utf-8")
        state = root / "lib" / f"di2siem-{name}"
        state.mkdir()
        (state / "state.json").write_text("{}", encoding="utf-8")
        for log in (f"di2siem-{name}.log", f"di2siem-{name}.log.1", f"di2siem-{name}.log.2.gz"):
            (root / "log" / log).write_text("x\n", encoding="utf-8")
    return {key: str(value) for key, value in paths.items()}


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the role's preflight wants root")
def test_removing_one_instance_leaves_the_other(tmp_path: Path) -> None:
    root = tmp_path / "vm"
    # instance names and a user no real install has: nothing outside root is touched
    first, second = "h5t-one", "h5t-two"
    role_vars = {
        **fake_install(root, [first, second]),
        "di2siem_state": "absent",
        "di2siem_user": "di2siem-h5t-nouser",
        "di2siem_group": "di2siem-h5t-nogroup",
    }
    before = tree(root)
    out = tmp_path / "out"
    out.mkdir()
    hosts = {
        "vm-one": {
            **role_vars,
            "di2siem_instance": first,
            "di2siem_keep_state_on_uninstall": False,
        },
        "vm-two": {**role_vars, "di2siem_instance": second},
    }
    result = playbook(tmp_path, UNINSTALL.format(root=root, out=out), hosts, *TAGS)
    assert result.returncode == 0, result.stdout + result.stderr

    def left(host: str) -> list[str]:
        paths = json.loads((out / f"{host}.json").read_text(encoding="utf-8"))
        return sorted(str(Path(p).relative_to(root)) for p in paths)

    gone = {p for p in before if first in p}
    assert gone == {
        f"etc/config-{first}.json",
        f"lib/di2siem-{first}",
        f"lib/di2siem-{first}/state.json",
        f"log/di2siem-{first}.log",
        f"log/di2siem-{first}.log.1",
        f"log/di2siem-{first}.log.2.gz",
    }
    assert left("vm-one") == sorted(set(before) - gone)
    # the last instance takes the shared directories and keeps its state (the default)
    assert left("vm-two") == [
        "lib",
        "lib/di2siem",
        f"lib/di2siem-{second}",
        f"lib/di2siem-{second}/state.json",
    ]


def test_bad_instance_names_are_refused(tmp_path: Path) -> None:
    play = """---
- name: Preflight only
  hosts: local
  gather_facts: false
  tasks:
    - name: The instance name rule
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: preflight.yml
"""
    # the first rule of the preflight: no facts needed
    facts = {"di2siem_state": "absent"}
    for bad in ("EU2", "-eu2", "eu2/x", "a" * 32):
        (tmp_path / bad[:5].replace("/", "_")).mkdir()
        result = playbook(
            tmp_path / bad[:5].replace("/", "_"), play, {"vm": {**facts, "di2siem_instance": bad}}
        )
        assert result.returncode == 2, bad
        assert "becomes part of file, cron and unit names" in result.stdout, bad
