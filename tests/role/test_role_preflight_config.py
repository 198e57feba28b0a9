"""The role judges a host's configuration before any target changes: preflight renders the
host's config.json and credentials.json on the controller and runs the collector's own
`di2siem check --offline` on them (tasks/preflight_config.yml), and asserts what the collector
cannot judge (the cron fields). Migration from the PowerShell recipe: the legacy file's
state.end_time, read on the target, seeds config.json's state.end_time, and a re-run keeps the
value the first install wrote; the old cron line is commented out once.

One run of the role's preflight (`--tags di2siem_preflight`, check mode) on local "hosts", one
per case; the paths of each host in a scratch directory. No secret in any output."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from di2siem import config
from test_instances import ROLE, playbook

JC_KEY = "jc-key-h18-0123456789"
CX_KEY = "cx-key-h18-9876543210"
LEGACY_KEY = "legacy-key-h18-55555"
FIRST = "2024-05-01T12:00:00.000Z"  # the old script's last window
LATER = "2024-05-02T08:30:00.000Z"

PREFLIGHT = """---
- name: The role's preflight, then what config.json would carry
  hosts: local
  gather_facts: false
  roles:
    - role: di2siem
  post_tasks:
    - name: Render config.json as the role would write it
      tags: always
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{role}/templates/config.json.j2') }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}-config.json"
        mode: "0600"
      check_mode: false
      changed_when: false
"""

# host -> (its variables, the message its preflight fails with; None: it passes)
CASES: dict[str, tuple[dict, str | None]] = {
    "good": ({}, None),
    "batch": (
        {"di2siem_batch_size": 999999},
        "config error: siem.batch_size: must be an integer between 1 and 10000 (got 999999)",
    ),
    "region": (
        {"di2siem_coralogix_region": "EU9"},
        'config error: siem.region: unknown Coralogix region "EU9"',
    ),
    "days": (
        {"di2siem_initial_days_back": 3},
        "config error: jumpcloud.initial_days_back: must be a number between -3650 and 0 (got 3)",
    ),
    "minute": (
        {"di2siem_cron_minute": "61"},
        "di2siem_cron_minute='61' is not a cron minute field: use *, */N, N, N-M (optionally /N)"
        " or a comma-separated list of them, with N and M from 0 to 59 (crontab(5)).",
    ),
    "future": (
        {"di2siem_legacy_end_time": "2099-01-01T00:00:00Z"},
        "config error: state.end_time: 2099-01-01T00:00:00Z lies in the future",
    ),
    "missing": (
        {"di2siem_legacy_config_file": "/nonexistent/h18/configurations.json"},
        "di2siem_legacy_config_file=/nonexistent/h18/configurations.json cannot be read on missing",
    ),
    "seeded": ({}, None),  # re-run: its config.json was written with FIRST
}
HEAD = "the collector refuses the configuration rendered from the role variables"


def legacy_file(path: Path, end_time: str) -> Path:
    """The PowerShell recipe's configurations.json (pwsh may write a BOM)."""
    legacy = {
        "jumpcloud": {"api_key": LEGACY_KEY, "initial_days_back": -1},
        "siem": {"headers": {"private_key": LEGACY_KEY}},
        "state": {"start_time": "2024-05-01T11:59:00.000Z", "end_time": end_time},
    }
    path.write_text(json.dumps(legacy, indent=4), encoding="utf-8-sig")
    return path


@pytest.fixture(scope="module")
def preflight(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("preflight_config")
    out = tmp_path / "out"
    out.mkdir()
    hosts = {}
    for name, (host_vars, _) in CASES.items():
        root = tmp_path / "vm" / name
        hosts[name] = {
            "di2siem_enforce_resources": False,
            "di2siem_jumpcloud_api_key": JC_KEY,
            "di2siem_coralogix_api_key": CX_KEY,
            "di2siem_coralogix_region": "EU1",
            "di2siem_config_dir": str(root / "etc"),
            "di2siem_install_dir": str(root / "opt"),
            "di2siem_state_dir": str(root / "lib" / "di2siem"),
            "di2siem_log_dir": str(root / "log"),
            **host_vars,
        }
    # first install: the legacy file with a BOM, no config.json yet
    hosts["good"]["di2siem_legacy_config_file"] = str(legacy_file(tmp_path / "good.json", FIRST))
    # re-run: config.json seeded with FIRST; the legacy file moved on since (the old job ran
    # again) -- the seed stays
    etc = Path(hosts["seeded"]["di2siem_config_dir"])
    etc.mkdir(parents=True)
    (etc / "config.json").write_text(
        json.dumps({"state": {"end_time": FIRST}, "state_dir": "x"}, indent=2, sort_keys=True),
        encoding="utf-8",
    )
    hosts["seeded"]["di2siem_legacy_config_file"] = str(legacy_file(tmp_path / "s.json", LATER))
    controller_tmp = tmp_path / "controller-tmp"
    controller_tmp.mkdir()
    os.environ["TMPDIR"] = str(controller_tmp)  # the controller's temporary directories
    try:
        result = playbook(
            tmp_path,
            PREFLIGHT.format(role=ROLE, out=out),
            hosts,
            "--tags",
            "di2siem_preflight",
            "--check",
            "-v",
        )
    finally:
        del os.environ["TMPDIR"]
    return result, out, tmp_path, controller_tmp


def recap(output: str) -> dict[str, dict[str, int]]:
    rows = output.split("PLAY RECAP")[1].splitlines()[1:]
    return {
        m[1]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[2])}
        for m in (re.match(r"^(\S+)\s*:(.*)$", row) for row in rows)
        if m
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="the role's preflight wants root")
def test_preflight_refuses_each_bad_value_with_its_message(preflight) -> None:
    result, out, tmp_path, controller_tmp = preflight
    text = result.stdout + result.stderr
    counts = recap(result.stdout)
    for host, (_, message) in CASES.items():
        failed = [
            json.loads(line.split(" => ", 1)[1])["msg"]
            for line in result.stdout.splitlines()
            if line.startswith((f"fatal: [{host}]", f"failed: [{host}]"))
        ]
        if message is None:
            assert counts[host]["failed"] == 0 and failed == [], (host, text)
        else:
            assert counts[host]["failed"] == 1, (host, text)
            assert any(message in line for line in failed), (host, message, failed)
            if message.startswith("config error"):  # through the collector, one line
                assert any(f"{host}: {HEAD}, nothing was changed" in line for line in failed)
            assert not (out / f"{host}-config.json").exists()  # the play stopped for it
        assert counts[host]["changed"] == 0, host
    # nothing on the targets, no temporary directory left on the controller
    assert sorted(p.name for p in (tmp_path / "vm").iterdir()) == ["seeded"]
    assert list(controller_tmp.iterdir()) == []
    for secret in (JC_KEY, CX_KEY, LEGACY_KEY):
        assert secret not in text


@pytest.mark.skipif(os.geteuid() != 0, reason="the role's preflight wants root")
def test_legacy_end_time_seeds_the_first_install_and_stays(preflight) -> None:
    _, out, _, _ = preflight
    first = json.loads((out / "good-config.json").read_text(encoding="utf-8"))
    assert first["state"] == {"end_time": FIRST}
    # the collector reads it as its legacy seed (a fresh org's floor)
    first["credentials_file"] = str(out / "credentials.json")
    (out / "credentials.json").write_text(
        json.dumps({"jumpcloud": {"api_key": JC_KEY}, "siem": {"api_key": CX_KEY}}),
        encoding="utf-8",
    )
    (out / "credentials.json").chmod(0o600)
    (out / "good-local.json").write_text(json.dumps(first), encoding="utf-8")
    parsed = config.load(str(out / "good-local.json"))
    assert parsed.legacy_end_time_ms == 1714564800000
    # a re-run keeps the first install's seed, not the legacy file's later end_time
    again = json.loads((out / "seeded-config.json").read_text(encoding="utf-8"))
    assert again["state"] == {"end_time": FIRST}


CRON = """---
- name: Comment out the old job's crontab line
  hosts: local
  gather_facts: false
  tasks:
    - name: Names and paths
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: paths.yml
        public: true
    - name: The old job
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: legacy_cron.yml
"""
OLD_LINE = "* * * * * pwsh /home/ubuntu/script.ps1 -config_file:/home/ubuntu/configurations.json"


def fake_crontab(bin_dir: Path, spool: Path) -> None:
    """crontab(1) on one file: -l prints it (rc 1 when absent), - replaces it from stdin."""
    bin_dir.mkdir()
    script = bin_dir / "crontab"
    script.write_text(
        "#!/bin/sh\n"
        f'f="{spool}"\n'
        'case "$1" in -l) [ -f "$f" ] || exit 1; cat "$f";;\n'
        '  *) cat > "$f";; esac\n',
        encoding="utf-8",
    )
    script.chmod(0o755)


def test_the_old_cron_line_is_commented_out_once(tmp_path: Path) -> None:
    spool = tmp_path / "crontab-ubuntu"
    spool.write_text(
        f"MAILTO=ops@example.com\n# a comment\n{OLD_LINE}\n0 3 * * * /usr/bin/backup\n",
        encoding="utf-8",
    )
    fake_crontab(tmp_path / "bin", spool)
    os.environ["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    try:
        host = {"di2siem_legacy_cron_user": "root", "ansible_python_interpreter": sys.executable}
        runs = [playbook(tmp_path, CRON, {"vm": host}) for _ in range(2)]
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(os.pathsep, 1)[1]
    for result in runs:
        assert result.returncode == 0, result.stdout + result.stderr
    assert spool.read_text(encoding="utf-8") == (
        f"MAILTO=ops@example.com\n# a comment\n#di2siem-disabled: {OLD_LINE}\n"
        "0 3 * * * /usr/bin/backup\n"
    )
    assert [recap(r.stdout)["vm"]["changed"] for r in runs] == [1, 0]
