"""The collection on the oldest ansible-core it declares (meta/runtime.yml) and on the latest.

For each version, a venv of its own (cached under .cache/ansible-core-<version>, built once
from the package index, reused by later runs) builds the collection with its own
ansible-galaxy, installs it into an empty collections path and, from a project directory
outside the checkout, applies the role by FQCN to the controller itself (connection local, no
target) in check mode, tags di2siem_preflight and di2siem_configure: argument validation,
every preflight assert and the configuration tasks (the template that carries the secrets),
nothing written (the install and schedule tasks would only simulate apt here, slowly; Molecule
runs them on real targets). The secrets are inline
`!vault` values (a vault password file): on 2.16-2.18 these used to fail the role's argument
validation ("Unknown parameter type: AnsibleVaultEncryptedUnicode"). Invalid variables fail
the validation with one message per variable, before any other task, and no secret shows.

Needs root on Debian/Ubuntu (the preflight asserts both); the first run of a version builds
its venv (about 30-60 s).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_collection import ansible_env
from test_collection import run as ok

yaml = pytest.importorskip("yaml")
vault_module = pytest.importorskip("ansible.parsing.vault")
VaultLib, VaultSecret = vault_module.VaultLib, vault_module.VaultSecret

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
MINIMUM = re.fullmatch(
    r">=(\d+\.\d+\.\d+)",
    yaml.safe_load((REPO / "meta" / "runtime.yml").read_text(encoding="utf-8"))["requires_ansible"],
)[1]
LATEST = "2.19.14"
VERSION = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))["version"]
VAULT_PASSWORD = "core-versions-vault-password-3b1f"
API_KEY = "core-versions-inline-api-key-8c2d"
HEADER_KEY = "core-versions-inline-header-key-e41a"
NOT_A_DICT = "core-versions-inline-not-a-dict-77f0"

PLAY = """---
- name: The role by FQCN on the controller itself, in check mode
  hosts: fleet
  gather_facts: false
  roles:
    - role: di2siem.di2siem.di2siem
  post_tasks:
    - name: The inline !vault values reached the role decrypted
      ansible.builtin.assert:
        that:
          - di2siem_jumpcloud_api_key | hash('sha256') == '%s'
          - di2siem_siem_headers.private_key | hash('sha256') == '%s'
        quiet: true
      tags: [always]
"""


def supported_host() -> bool:
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return False
    return os.geteuid() == 0 and re.search(r"(?m)^ID=\"?(debian|ubuntu)\"?$", release) is not None


pytestmark = [
    pytest.mark.ansible_core,
    pytest.mark.skipif(
        not supported_host(), reason="needs root on Debian/Ubuntu (the role's preflight)"
    ),
]


def core_venv(version: str) -> Path:
    """.cache/ansible-core-VERSION/bin, built once (under a lock; complete when stamped)."""
    venv = CACHE / f"ansible-core-{version}"
    stamp = venv / ".complete"
    CACHE.mkdir(exist_ok=True)
    with (CACHE / f"ansible-core-{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file():
            shutil.rmtree(venv, ignore_errors=True)
            ok([sys.executable, "-m", "venv", str(venv)], REPO)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
            ok([*pip, f"ansible-core=={version}"], REPO)
            stamp.write_text(version + "\n", encoding="utf-8")
    return venv / "bin"


def vaulted(secret: str, spaces: int) -> str:
    """SECRET as an inline !vault value (the format every version reads: 1.1 AES256),
    indented for a YAML mapping value at SPACES."""
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))])
    body = vault.encrypt(secret).decode().strip().replace("\n", "\n" + " " * (spaces + 2))
    return "!vault |\n" + " " * (spaces + 2) + body


def hosts_yml(bin_dir: Path, **host_vars: str) -> str:
    """One host, the controller itself; HOST_VARS are YAML snippets at host-variable depth."""
    lines = [
        "fleet:",
        "  hosts:",
        "    controller:",
        "      ansible_connection: local",
        f"      ansible_python_interpreter: {bin_dir / 'python'}",
    ]
    lines += [f"      {name}: {value}" for name, value in host_vars.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("version", sorted({MINIMUM, LATEST}))
def test_the_role_with_inline_vault_values(version: str, tmp_path: Path) -> None:
    bin_dir = core_venv(version)
    home, project, collections = tmp_path / "home", tmp_path / "project", tmp_path / "collections"
    for path in (home / "tmp", project, collections):
        path.mkdir(parents=True)
    env = ansible_env(collections, home)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        XDG_CACHE_HOME=str(home / ".cache"),
        ANSIBLE_VAULT_PASSWORD_FILE=str(project / "vault-password"),
    )
    (home / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    (project / "vault-password").write_text(VAULT_PASSWORD + "\n", encoding="utf-8")
    core = ok([str(bin_dir / "ansible"), "--version"], project, env)
    assert re.match(rf"ansible \[core {re.escape(version)}\]", core), core

    built = tmp_path / "build"
    galaxy = str(bin_dir / "ansible-galaxy")
    ok([galaxy, "collection", "build", "--output-path", str(built), str(REPO)], project, env)
    tarball = built / f"di2siem-di2siem-{VERSION}.tar.gz"
    ok([galaxy, "collection", "install", str(tarball)], project, env)

    sha = [hashlib.sha256(s.encode()).hexdigest() for s in (API_KEY, HEADER_KEY)]
    (project / "site.yml").write_text(PLAY % tuple(sha), encoding="utf-8")
    api_key = vaulted(API_KEY, 6)
    headers = "\n        private_key: " + vaulted(HEADER_KEY, 8)
    (project / "hosts.yml").write_text(
        hosts_yml(bin_dir, di2siem_jumpcloud_api_key=api_key, di2siem_siem_headers=headers),
        encoding="utf-8",
    )
    layout = tmp_path / "target"
    group_vars = {
        "di2siem_siem_format": "json_lines",
        "di2siem_siem_url": "https://siem.example.invalid/logs",
        "di2siem_enforce_resources": False,
        "di2siem_install_dir": str(layout / "opt"),
        "di2siem_config_dir": str(layout / "etc"),
        "di2siem_state_dir": str(layout / "state"),
        "di2siem_log_dir": str(layout / "log"),
    }
    (project / "group_vars" / "fleet").mkdir(parents=True)
    (project / "group_vars" / "fleet" / "vars.yml").write_text(
        yaml.safe_dump(group_vars), encoding="utf-8"
    )
    playbook = [str(bin_dir / "ansible-playbook"), "-i", "hosts.yml", "site.yml"]

    tags = "di2siem_preflight,di2siem_configure"
    out = ok([*playbook, "--check", "--diff", "--tags", tags], project, env)
    assert API_KEY not in out and HEADER_KEY not in out
    assert re.search(r"(?m)^controller\s+: ok=\d+ .* failed=0 ", out), out
    assert re.search(
        r"Validating arguments against arg spec 'main'.*\n(ok|changed): \[controller\]", out
    ), out
    assert "Write the collector configuration" in out
    assert re.search(r"reached the role decrypted\] \**\nok: \[controller\]", out), out
    assert not layout.exists(), "check mode wrote the target layout"

    # Invalid: a choice out of range, and a header mapping given as one !vault string.
    not_a_dict = vaulted(NOT_A_DICT, 6)
    (project / "hosts.yml").write_text(
        hosts_yml(
            bin_dir,
            di2siem_jumpcloud_api_key=api_key,
            di2siem_siem_headers=not_a_dict,
            di2siem_scheduler="hourly",
        ),
        encoding="utf-8",
    )
    proc = subprocess.run(
        [*playbook, "--check"], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Validation of arguments failed" in out, out
    assert "value of di2siem_scheduler must be one of: cron, timer, got: hourly" in out, out
    assert re.search(
        r"argument 'di2siem_siem_headers' is of type .* unable to convert to dict", out
    ), out
    assert "Preflight |" not in out, "a task ran after the failed validation"
    assert API_KEY not in out and NOT_A_DICT not in out
