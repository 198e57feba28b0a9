"""The repository is the Ansible collection di2siem.di2siem, installable the usual ways.

The collection is built from the working tree (`ansible-galaxy collection build`), installed into
an empty collections path from the tarball and from git through requirements.yml (a throwaway
git repository holding the working tree, cloned by a file:// URL), and used by FQCN from a
directory outside the checkout: `ansible-playbook --syntax-check di2siem.di2siem.site` and
`ansible-doc -t role di2siem.di2siem.di2siem`. The tarball carries the collector's source (the
role builds the targets' wheel from it) and leaves tests, Molecule and caches out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
VERSION = GALAXY["version"]
TARBALL = f"di2siem-di2siem-{VERSION}.tar.gz"
PLAYBOOKS = ("site", "uninstall", "handoff")
# What the role needs from the collection to build the targets' wheel.
CARRIED = (
    "pyproject.toml",
    "README.md",
    "collector/di2siem/__init__.py",
    "collector/di2siem/cli.py",
    "roles/di2siem/files/build_wheelhouse.py",
    "plugins/filter/shard.py",
    "meta/runtime.yml",
    "playbooks/site.yml",
    "playbooks/uninstall.yml",
)
LEFT_OUT = ("tests", "molecule", ".cache", ".venv", "dist", "benchmarks", ".ci", ".git", "sandbox")


def ansible_env(collections: Path, home: Path) -> dict[str, str]:
    """An environment that sees only COLLECTIONS (no user or system collections, no config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_ROLES_PATH=str(home / "no-roles"),
        ANSIBLE_CONFIG=str(home / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
    )
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{' '.join(argv)}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("collection-build")
    run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO)],
        REPO,
    )
    built = out / TARBALL
    assert built.is_file(), sorted(p.name for p in out.iterdir())
    return built


def outside(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty collections path and a project directory outside the checkout."""
    collections = tmp_path / "collections"
    project = tmp_path / "project"
    for path in (collections, project, tmp_path / "home" / "tmp"):
        path.mkdir(parents=True)
    (tmp_path / "home" / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    (project / "hosts.yml").write_text(
        "all:\n  children:\n    di2siem:\n      hosts:\n        fleet-host:\n"
        "          ansible_connection: local\n",
        encoding="utf-8",
    )
    return project, ansible_env(collections, tmp_path / "home")


def assert_usable_by_fqcn(project: Path, env: dict[str, str]) -> Path:
    """The installed collection's playbooks and role answer by FQCN; returns its root."""
    listed = run(
        [str(BIN / "ansible-galaxy"), "collection", "list", "di2siem.di2siem"], project, env
    )
    assert re.search(rf"di2siem\.di2siem\s+{re.escape(VERSION)}", listed), listed
    root = Path(env["ANSIBLE_COLLECTIONS_PATH"]) / "ansible_collections" / "di2siem" / "di2siem"
    for name in PLAYBOOKS:
        out = run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                "hosts.yml",
                "--syntax-check",
                f"di2siem.di2siem.{name}",
            ],
            project,
            env,
        )
        assert f"playbook: {root / 'playbooks' / (name + '.yml')}" in out, out
    doc = run([str(BIN / "ansible-doc"), "-t", "role", "di2siem.di2siem.di2siem"], project, env)
    assert re.search(r"ENTRY POINT: \W*main\b", doc), doc
    assert "di2siem_jumpcloud_api_key" in doc
    for relative in CARRIED:
        assert (root / relative).is_file(), relative
    return root


def test_version_is_the_collectors_version() -> None:
    init = (REPO / "collector" / "di2siem" / "__init__.py").read_text(encoding="utf-8")
    assert re.search(r'^__version__ = "([^"]+)"$', init, re.M)[1] == VERSION


def major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_the_declared_minimum_ansible_core_is_the_one_tested() -> None:
    """meta/runtime.yml, the role's meta and the dev dependency name one minimum, and this
    run's ansible-core (on which these tests prove the collection) satisfies it."""
    from ansible.release import __version__ as core

    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    minimum = re.fullmatch(r">=(\d+\.\d+)\.0", runtime["requires_ansible"])[1]
    role_meta = yaml.safe_load(
        (REPO / "roles" / "di2siem" / "meta" / "main.yml").read_text(encoding="utf-8")
    )
    assert role_meta["galaxy_info"]["min_ansible_version"] == minimum
    assert f'"ansible-core>={minimum}"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert major_minor(core) >= major_minor(minimum)


def test_changelog_has_the_current_version() -> None:
    changelog = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text(encoding="utf-8"))
    assert str(VERSION) in {str(v) for v in changelog["releases"]}
    fragments = REPO / "changelogs" / "fragments"
    for fragment in fragments.glob("*.y*ml"):
        sections = yaml.safe_load(fragment.read_text(encoding="utf-8"))
        assert isinstance(sections, dict) and sections, fragment.name


def test_tarball_carries_the_collector_and_leaves_dev_files_out(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    missing = [p for p in (*CARRIED, "MANIFEST.json", "galaxy.yml") if p not in names]
    # galaxy.yml itself is not in a built collection: MANIFEST.json replaces it
    assert missing == ["galaxy.yml"]
    leaked = sorted(n for n in names if n.split("/")[0] in LEFT_OUT or "__pycache__" in n)
    assert leaked == []


def test_install_from_the_tarball(tarball: Path, tmp_path: Path) -> None:
    project, env = outside(tmp_path)
    run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball)], project, env)
    assert_usable_by_fqcn(project, env)


README = (REPO / "README.md").read_text(encoding="utf-8")
# The README's git forms: the https URL of your copy of the repository, or a local clone.
README_GIT_URL = "git+https://<your git host>/<path>/di2siem.git"
README_GIT_LOCAL = "git+file:///srv/git/di2siem.git,<version>"


def readme_requirements() -> str:
    """The README's requirements.yml block, as documented."""
    block = re.search(r"```yaml\n(# requirements\.yml.*?)```", README, re.S)
    assert block, "README: no requirements.yml block"
    return block[1]


def git_copy_of_the_working_tree(repo: Path) -> None:
    """A git repository holding the working tree as it is (tracked and new files, uncommitted
    changes included), tagged v<version> as a release would be: it proves this tree, not the
    last commit."""
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    for name in filter(None, files.split("\0")):
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted, not yet committed
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    git = [
        "git",
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@invalid",
        "-c",
        "init.defaultBranch=main",
    ]
    run([*git, "init", "-q"], repo)
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-q", "-m", "working tree"], repo)
    run([*git, "tag", f"v{VERSION}"], repo)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_install_from_git_the_readme_ways(tmp_path: Path) -> None:
    """The README's requirements.yml as written (only the URL of your copy replaced by a local
    one) and its one-line git+file:// form, each into an empty collections path."""
    repo = tmp_path / "di2siem.git"
    git_copy_of_the_working_tree(repo)

    documented = readme_requirements()
    entry = yaml.safe_load(documented)["collections"][0]
    assert entry["name"] == README_GIT_URL and entry["type"] == "git", entry
    assert entry["version"] == f"v{VERSION}", "README's requirements.yml pins another version"
    project, env = outside(tmp_path)
    (project / "requirements.yml").write_text(
        documented.replace(README_GIT_URL, f"git+file://{repo}"), encoding="utf-8"
    )
    run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "-r", "requirements.yml"],
        project,
        env,
    )
    assert_usable_by_fqcn(project, env)

    assert f"ansible-galaxy collection install '{README_GIT_LOCAL}'" in README
    one_line = README_GIT_LOCAL.replace("/srv/git/di2siem.git", str(repo))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp_path / "collections-one-line")
    run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "install",
            one_line.replace("<version>", f"v{VERSION}"),
        ],
        project,
        env,
    )
    listed = run(
        [str(BIN / "ansible-galaxy"), "collection", "list", "di2siem.di2siem"], project, env
    )
    assert f"{tmp_path / 'collections-one-line'}/ansible_collections" in listed, listed
    assert re.search(rf"di2siem\.di2siem\s+{re.escape(VERSION)}", listed), listed


MIXED_HOSTS = """all:
  children:
    di2siem:
      hosts:
        leaving:
          di2siem_state: absent
        staying:
          di2siem_jumpcloud_api_key: %s
      vars:
        ansible_connection: local
        ansible_python_interpreter: %s
"""
VAULT_PASSWORD = "mixed-fleet-vault-password-91c3"
INLINE_SECRET = "mixed-fleet-inline-vault-key-5d7e"
SERIAL_PLAY = """---
- name: A fleet in batches, the absent host first
  hosts: di2siem
  gather_facts: false
  serial: [1, 1]
  roles:
    - role: di2siem.di2siem.di2siem
"""


def test_mixed_fleet_builds_from_the_installed_collection(tarball: Path, tmp_path: Path) -> None:
    """The first host absent, the others present (one play, then serial: 1): the controller
    build (run_once) still runs, from the collector source the installed collection carries,
    and every present host gets the wheel set; the second play finds the cache warm. A present
    host's key is an inline !vault value: the role's argument validation accepts it.
    --tags di2siem_build: the controller side only.
    The controller cache is per user: the runs write nothing in the temporary tree around the
    playbook directory but ~/.cache/di2siem (and pip's own ~/.cache/pip), leave nothing in
    TMPDIR, and a third run follows XDG_CACHE_HOME."""
    project, env = outside(tmp_path)
    env["TMPDIR"] = str(tmp_path / "tmpdir")
    (tmp_path / "tmpdir").mkdir()
    env["ANSIBLE_GATHERING"] = "explicit"  # the role gathers the few facts it needs
    run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball)], project, env)
    # an inline !vault value: the role's argument validation must accept it
    (project / "vault-password").write_text(VAULT_PASSWORD, encoding="utf-8")
    env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(project / "vault-password")
    encrypted = run([str(BIN / "ansible-vault"), "encrypt_string", INLINE_SECRET], project, env)
    inline = encrypted.strip().replace("\n", "\n            ")
    assert inline.startswith("!vault |"), encrypted
    hosts = MIXED_HOSTS % (inline, sys.executable)
    (project / "hosts.yml").write_text(hosts, encoding="utf-8")
    (project / "serial.yml").write_text(SERIAL_PLAY, encoding="utf-8")
    cache = tmp_path / "home" / ".cache" / "di2siem" / "wheelhouse"
    before = files_below(tmp_path)
    for playbook, built in (("di2siem.di2siem.site", "changed"), ("serial.yml", "ok")):
        out = build_only(playbook, project, env)
        assert INLINE_SECRET not in out
        # failed=0 below: staying's inline !vault value passed the role's argument validation
        recap = dict(re.findall(r"(?m)^(\w+)\s+: (ok=.*)$", out))
        assert sorted(recap) == ["leaving", "staying"], out
        assert all(" failed=0 " in line for line in recap.values()), out
        assert re.search(rf"(?m)^{built}: \[\w+ -> localhost\]", out), out
        # every present host read the wheel set, whatever its batch; the absent one skipped it
        for name, verdict in (("leaving", "skipping"), ("staying", "ok")):
            pattern = rf"Build \| Read the wheel set\] \**\n(.*\n)*?{verdict}: \[{name}\]"
            assert re.search(pattern, out), out
    # the default controller cache is per user (~/.cache/di2siem), never next to the project
    assert f"di2siem-{VERSION}-py3-none-any.whl" in [p.name for p in cache.glob("*.whl")], out
    assert (cache / "requirements.txt").is_file()
    written = sorted(k for k, v in files_below(tmp_path).items() if before.get(k) != v)
    # pip's own cache; and pip's user agent runs `rustc --version`, which a rustup install
    # answers by writing its settings (machines with rustup on PATH)
    per_user = ("home/.cache/di2siem/", "home/.cache/pip/", "home/.rustup/")
    assert [p for p in written if not p.startswith(per_user)] == []
    assert any(p.startswith("home/.cache/di2siem/wheelhouse/") for p in written)
    assert sorted(p.name for p in project.parent.iterdir()) == [
        "collections",
        "home",
        "project",
        "tmpdir",
    ]
    assert sorted(p.name for p in project.iterdir()) == [
        "hosts.yml",
        "serial.yml",
        "vault-password",
    ]
    assert list((tmp_path / "tmpdir").iterdir()) == []
    # XDG_CACHE_HOME moves the cache: the warm one moved there is used (a run that still
    # looked in ~/.cache would rebuild there)
    xdg = tmp_path / "home" / "xdg"
    shutil.move(str(tmp_path / "home" / ".cache" / "di2siem"), str(xdg / "di2siem"))
    env["XDG_CACHE_HOME"] = str(xdg)
    out = build_only("serial.yml", project, env)
    assert re.search(r"(?m)^ok: \[\w+ -> localhost\]", out), out
    assert not (tmp_path / "home" / ".cache" / "di2siem").exists()


def test_installed_role_shards_with_the_collections_filter(tarball: Path, tmp_path: Path) -> None:
    """The role from the installed collection finds its sharding filter by FQCN
    (di2siem.di2siem.di2siem_shard_assignment, the one way the role calls it)."""
    from test_shard import ORGS, inventory, run_shares, shard

    project, env = outside(tmp_path)
    run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball)], project, env)
    orgs = ORGS[:12]
    hosts_file = inventory(
        project,
        {"vm-a": {}, "vm-b": {}},
        {"di2siem_shard_group": "fleet", "di2siem_jumpcloud_org_ids": orgs},
    )
    result, shares = run_shares(project, hosts_file, "di2siem.di2siem.di2siem", env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {h: s["orgs"] for h, s in shares.items()} == {
        h: shard.shard(orgs, ["vm-a", "vm-b"], h) for h in ("vm-a", "vm-b")
    }


def files_below(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ROOT (relative path: size, mtime)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def build_only(playbook: str, project: Path, env: dict[str, str]) -> str:
    return run(
        [str(BIN / "ansible-playbook"), "-i", "hosts.yml", playbook, "--tags", "di2siem_build"],
        project,
        env,
    )
