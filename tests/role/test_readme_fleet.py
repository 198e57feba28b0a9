"""The README's "Deploy to your fleet" commands, run as written, in their order.

The command block is read from README.md, so the README and this test cannot drift. Each line
runs with bash in a scratch directory that holds a copy of the repository's inventory.example
and playbooks; only the prompts are replaced: `--ask-vault-pass` and ansible-vault's own prompts
become password files (old: the example's di2siem-demo-only, new: the test's), and EDITOR is a
script that writes the test's hosts (`hosts.yml`) or keys (a vault file).

- test_fleet_inventory_commands: copy, hosts, rekey, edit, syntax check (no target, seconds).
- test_fleet_dry_run_and_removal (root; molecule marker): the dry run `--check --diff` and the
  removal against a throwaway nspawn target (molecule/shared/target.sh, name and index
  DI2SIEM_MOLECULE_NAME_README / DI2SIEM_MOLECULE_INDEX_README, default di2siem-readme / 61),
  with both example groups' hosts pointed at it.
The real deploy line is not run: it would ship to the real JumpCloud and Coralogix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from end_to_end import REPO, TARGET, missing_requirements, require_targets

README = REPO / "README.md"
EXAMPLE_PASSWORD = "di2siem-demo-only"
NEW_PASSWORD = "readme-fleet-test-password-4f2a"
JUMPCLOUD_KEY = "readme-fleet-jumpcloud-key-7c1e"
CORALOGIX_KEY = "readme-fleet-coralogix-key-2b9d"
HEARTBEAT_TOKEN = "readme-fleet-heartbeat-5e8a"
SECRETS = (NEW_PASSWORD, JUMPCLOUD_KEY, CORALOGIX_KEY, HEARTBEAT_TOKEN)
NAME = os.environ.get("DI2SIEM_MOLECULE_NAME_README", "di2siem-readme")
INDEX = int(os.environ.get("DI2SIEM_MOLECULE_INDEX_README", "61"))
COMMAND_TIMEOUT_S = 300

EDITOR = f"""#!{sys.executable}
# EDITOR for the README's fleet commands: writes the test's hosts or vault keys.
import os, sys
from pathlib import Path

path = Path(sys.argv[-1])
text = path.read_text()
if path.name == "hosts.yml":
    path.write_text(os.environ["FLEET_TEST_HOSTS"])
elif "vault_di2siem_jumpcloud_api_key" in text:
    path.write_text(os.environ["FLEET_TEST_VAULT"])
else:
    sys.exit(f"fleet test editor: unexpected file {{path}}:\\n{{text}}")
"""

VAULT = f"""---
vault_di2siem_jumpcloud_api_key: "{JUMPCLOUD_KEY}"
vault_di2siem_coralogix_api_key: "{CORALOGIX_KEY}"
vault_di2siem_heartbeat_url: "https://hc-ping.example/{HEARTBEAT_TOKEN}"
"""


def hosts_yaml(key: str) -> str:
    host = f"10.213.{INDEX}.2"
    return f"""---
all:
  children:
    di2siem:
      children:
        acme_eu:
          hosts:
            readme-eu: {{ansible_host: {host}}}
        acme_us:
          hosts:
            readme-us: {{ansible_host: {host}}}
  vars:
    ansible_user: root
    ansible_private_key_file: {key}
    ansible_ssh_common_args: >-
      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes
    ansible_python_interpreter: /usr/bin/python3
"""


def readme_fleet_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Deploy to your fleet\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README.md: no ```sh block under 'Deploy to your fleet'"
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in block.group(1).splitlines())
    return [line for line in lines if line]


@dataclass
class Step:
    readme: str  # the line as the README gives it
    run: str  # what runs: the line, prompts replaced by password files
    kind: str  # "offline", "target" or "deploy" (not run)


@dataclass
class Fleet:
    workdir: Path
    env: dict[str, str]
    steps: list[Step]
    outputs: dict[str, str] = field(default_factory=dict)  # README line -> its output
    seconds: dict[str, float] = field(default_factory=dict)  # README line -> its run time

    def execute(self, step: Step) -> str:
        start = time.monotonic()
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", step.run],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        self.seconds[step.readme] = time.monotonic() - start
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"README fleet command failed: {step.readme}\n{output[-4000:]}"
        for secret in SECRETS:
            assert secret not in output, f"a secret shows in the output of: {step.readme}"
        self.outputs[step.readme] = output
        return output

    def vault_view(self, group: str, password_file: Path) -> subprocess.CompletedProcess:
        vault = f"inventory/group_vars/{group}/vault.yml"
        return subprocess.run(
            ["ansible-vault", "view", "--vault-password-file", str(password_file), vault],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


def plan(command: str, old: Path, new: Path) -> Step:
    """How the test runs one README line; a line it does not know fails the test."""
    words = command.split()
    if words[0] == "cp" or words[0].startswith("${EDITOR"):
        return Step(command, command, "offline")
    if words[:2] == ["ansible-vault", "rekey"]:
        run = f"{command} --vault-password-file {old} --new-vault-password-file {new}"
        return Step(command, run, "offline")
    if words[:2] in (["ansible-vault", "edit"], ["ansible-vault", "view"]):
        return Step(command, f"{command} --vault-password-file {new}", "offline")
    if words[0] == "ansible-playbook" and "--ask-vault-pass" in words:
        run = command.replace("--ask-vault-pass", f"--vault-password-file {new}")
        if "--syntax-check" in words:
            return Step(command, run, "offline")
        if "--check" in words or "playbooks/uninstall.yml" in words:
            return Step(command, run, "target")
        return Step(command, run, "deploy")
    raise AssertionError(f"tests/role/test_readme_fleet.py does not know how to run: {command}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The scratch directory, after every offline README line ran in order."""
    workdir = tmp_path_factory.mktemp("fleet")
    shutil.copytree(REPO / "inventory.example", workdir / "inventory.example")
    shutil.copytree(REPO / "playbooks", workdir / "playbooks", symlinks=True)
    (workdir / "roles").symlink_to(REPO / "roles")
    old, new, editor = workdir / "old-pass", workdir / "new-pass", workdir / "editor"
    old.write_text(EXAMPLE_PASSWORD + "\n")
    new.write_text(NEW_PASSWORD + "\n")
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    key = "/nonexistent/no-target-here"
    if missing_requirements() is None:
        key = subprocess.run([TARGET, "key"], capture_output=True, text=True, check=True).stdout
    env = dict(
        os.environ,
        EDITOR=str(editor),
        FLEET_TEST_HOSTS=hosts_yaml(key.strip()),
        FLEET_TEST_VAULT=VAULT,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_HOST_KEY_CHECKING="false",
        ANSIBLE_PIPELINING="true",  # speed only: fewer SSH round trips per task
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    steps = [plan(command, old, new) for command in readme_fleet_commands()]
    result = Fleet(workdir, env, steps)
    for step in steps:
        if step.kind == "offline":
            result.execute(step)
    yield result


def test_fleet_inventory_commands(fleet: Fleet) -> None:
    kinds = [step.kind for step in fleet.steps]
    # The README names the copy, the rekey, the syntax check, the dry run, the deploy and the
    # removal; the deploy alone is not run here.
    assert kinds.count("deploy") == 1, kinds
    assert kinds.count("target") == 2, kinds
    assert "--syntax-check" in " ".join(s.readme for s in fleet.steps if s.kind == "offline")
    inventory = fleet.workdir / "inventory"
    assert (inventory / "hosts.yml").read_text() == fleet.env["FLEET_TEST_HOSTS"]
    for group in ("acme_eu", "acme_us"):
        path = inventory / "group_vars" / group / "vault.yml"
        assert path.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256\n"), f"{path} not encrypted"
        assert JUMPCLOUD_KEY not in path.read_text()
        mine = fleet.vault_view(group, fleet.workdir / "new-pass")
        assert mine.returncode == 0, mine.stderr
        assert mine.stdout == VAULT, f"{group}: the edit did not keep the test's keys"
        example = fleet.vault_view(group, fleet.workdir / "old-pass")
        assert example.returncode != 0, f"{group}: the example password still opens the vault"
        assert (inventory / "group_vars" / group / "vars.yml").read_text() == (
            REPO / "inventory.example" / "group_vars" / group / "vars.yml"
        ).read_text()
    syntax = next(out for line, out in fleet.outputs.items() if "--syntax-check" in line)
    assert "playbook: playbooks/site.yml" in syntax


def test_fleet_operability_settings_resolve_from_the_vault(fleet: Fleet) -> None:
    """After the README's steps, every host's heartbeat URL is the one in its group's vault and
    the metrics textfile directory is set (assert runs on the controller: no target needed)."""
    expected = f"https://hc-ping.example/{HEARTBEAT_TOKEN}"
    checks = [
        f"di2siem_heartbeat_url == 'https://hc-ping.example/' ~ '{HEARTBEAT_TOKEN}'",
        "di2siem_metrics_textfile_dir == '/var/lib/prometheus/node-exporter'",
    ]
    proc = subprocess.run(
        ["ansible", "di2siem", "-i", "inventory/hosts.yml", "--vault-password-file", "new-pass",
         "-m", "ansible.builtin.assert", "-a", json.dumps({"that": checks, "quiet": True})],
        cwd=fleet.workdir, env=fleet.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert output.count("SUCCESS") == 2, output[-3000:]
    assert expected not in output and HEARTBEAT_TOKEN not in output


RECAP = re.compile(
    r"^(readme-eu|readme-us)\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def recap(output: str) -> dict[str, tuple[int, int, int, int]]:
    return {m[1]: (int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in RECAP.finditer(output)}


@pytest.mark.molecule
def test_fleet_dry_run_and_removal(fleet: Fleet, capsys: pytest.CaptureFixture) -> None:
    require_targets(capsys)
    subprocess.run([TARGET, "down", NAME, str(INDEX)], capture_output=True, check=False)
    up = subprocess.run(
        [TARGET, "up", NAME, str(INDEX), "bookworm"], capture_output=True, text=True, timeout=900
    )
    try:
        assert up.returncode == 0, f"target.sh up {NAME} {INDEX} failed:\n{up.stderr[-3000:]}"
        for step in (s for s in fleet.steps if s.kind == "target"):
            output = fleet.execute(step)
            hosts = recap(output)
            assert set(hosts) == {"readme-eu", "readme-us"}, f"{step.readme}:\n{output[-3000:]}"
            for host, (ok, changed, unreachable, failed) in hosts.items():
                assert (unreachable, failed) == (0, 0), f"{step.readme}: {host}\n{output[-3000:]}"
                assert ok > 0, f"{step.readme}: {host} ran no task"
                if "--check" in step.readme:
                    # A pristine host: the dry run reports what the deploy would change.
                    assert changed > 0, f"{step.readme}: {host} would change nothing"
            # Neither the dry run nor the removal leaves the collector on the host.
            probe = subprocess.run(
                [TARGET, "ssh", NAME, str(INDEX), "test ! -e /opt/di2siem -a ! -e /etc/di2siem"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert probe.returncode == 0, f"{step.readme} left files: {probe.stderr}"
    finally:
        subprocess.run([TARGET, "down", NAME, str(INDEX)], capture_output=True, check=False)
        with capsys.disabled():
            rows = [f"  {sec:6.1f} s  {line}" for line, sec in fleet.seconds.items()]
            sys.stdout.write("\nREADME fleet commands:\n" + "\n".join(rows) + "\n")
