"""The controller side of the install (roles/di2siem/files/build_wheelhouse.py): the wheel set
comes from the hash lock, and a controller without a package index still deploys.

The package index is made unreachable (OFFLINE: no pip config, index http://127.0.0.1:9/,
no find-links): a cold build fails there (the control), a warm cache and a prebuilt
wheelhouse (directory, tarball, URL with sha256) need no index. One build with the index
(module fixture) seeds the rest.

The simulators are not in it: the collector's wheel holds only the package di2siem, and the
simulators are their own pure-Python distribution di2siem-sandbox (sandbox/), whose one-wheel
wheelhouse molecule/shared/sandbox-wheelhouse.sh builds for the Molecule and demo targets.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "di2siem" / "files" / "build_wheelhouse.py"
LOCK = REPO / "requirements.lock"
VERSION = re.search(
    r'^__version__ = "([^"]+)"$',
    (REPO / "collector" / "di2siem" / "__init__.py").read_text(encoding="utf-8"),
    re.M,
)[1]
OFFLINE = {
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_INDEX_URL": "http://127.0.0.1:9/",
    "PIP_EXTRA_INDEX_URL": "",
    "PIP_FIND_LINKS": "",
    "PIP_RETRIES": "0",
    "PIP_TIMEOUT": "3",
}


def build(*args: str, offline: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, **OFFLINE) if offline else dict(os.environ)
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--python", sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_pins() -> dict[str, tuple[str, str]]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, rest = line.split("==")
            version, digest = rest.split(" --hash=sha256:")
            pins[name.lower().replace("_", "-")] = (version, digest)
    return pins


def wheels(directory: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(directory.glob("*.whl"))}


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheelhouse built from this checkout with the package index (the one online build)."""
    dest = tmp_path_factory.mktemp("warm") / "wheelhouse"
    out = result(build("--source", str(REPO), "--dest", str(dest)))
    assert out["changed"] is True
    return dest


def test_the_wheel_set_is_the_lock_plus_the_collector(warm: Path) -> None:
    found = {
        name.split("-")[0].lower().replace("_", "-"): (name.split("-")[1], digest)
        for name, digest in wheels(warm).items()
    }
    own = found.pop("di2siem")
    assert own[0] == VERSION
    assert found == lock_pins()
    assert all(n.endswith("-py3-none-any.whl") for n in wheels(warm))
    listed = (warm / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(listed) == sorted(
        f"{n.split('-')[0]}=={n.split('-')[1]} --hash=sha256:{d}" for n, d in wheels(warm).items()
    )


def wheel_files(wheel: Path) -> dict[str, str]:
    """Every file of WHEEL (name: text of the small metadata files, else "")."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            n: archive.read(n).decode()
            if n.split("/")[-1] in ("METADATA", "entry_points.txt")
            else ""
            for n in archive.namelist()
        }


def test_the_collector_wheel_holds_no_simulator(warm: Path) -> None:
    (wheel,) = warm.glob("di2siem-*.whl")
    files = wheel_files(wheel)
    info = f"di2siem-{VERSION}.dist-info"
    assert {n.split("/")[0] for n in files} == {"di2siem", info}
    assert [n for n in files if "sandbox" in n.lower()] == []
    assert "di2siem_sandbox" not in files[f"{info}/METADATA"]
    scripts = files[f"{info}/entry_points.txt"].split("[console_scripts]")[1].split()
    assert scripts == ["di2siem", "=", "di2siem.cli:main"]


def test_the_simulators_are_their_own_pure_python_distribution(tmp_path: Path) -> None:
    dest = tmp_path / "sandbox-wheelhouse"
    proc = subprocess.run(
        [str(REPO / "molecule" / "shared" / "sandbox-wheelhouse.sh"), str(dest)],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = dest.glob("*.whl")  # no dependency: the one wheel is the whole wheelhouse
    assert re.fullmatch(r"di2siem_sandbox-[^-]+-py3-none-any\.whl", wheel.name), wheel.name
    files = wheel_files(wheel)
    (info,) = {n.split("/")[0] for n in files} - {"di2siem_sandbox"}
    assert re.fullmatch(r"di2siem_sandbox-[^-]+\.dist-info", info), info
    assert "Requires-Dist" not in files[f"{info}/METADATA"]
    scripts = files[f"{info}/entry_points.txt"].split("[console_scripts]")[1].split()
    assert scripts == ["di2siem-sandbox", "=", "di2siem_sandbox:main"]
    assert "di2siem_sandbox/__main__.py" in files


def test_a_cold_build_needs_the_index(tmp_path: Path) -> None:
    """The control: OFFLINE really cuts the index off."""
    proc = build("--source", str(REPO), "--dest", str(tmp_path / "cold"), offline=True)
    assert proc.returncode != 0
    assert wheels(tmp_path / "cold") == {}


def test_a_warm_cache_needs_no_index_and_changes_nothing(warm: Path, tmp_path: Path) -> None:
    dest = tmp_path / "wheelhouse"
    shutil.copytree(warm, dest)
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    start = time.monotonic()
    out = result(build("--source", str(REPO), "--dest", str(dest), offline=True))
    assert time.monotonic() - start < 10
    assert out["changed"] is False
    assert out["version"] == VERSION
    assert out["wheels"] == sorted(wheels(warm))
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def tarball_of(wheelhouse: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.add(wheelhouse, arcname=f"di2siem-wheelhouse-{VERSION}")
    return path


def test_a_prebuilt_tarball_installs_offline(warm: Path, tmp_path: Path) -> None:
    tarball = tarball_of(warm, tmp_path / "wh.tar.gz")
    dest = tmp_path / "dest"
    out = result(
        build(
            "--source",
            str(tmp_path / "no-source"),
            "--dest",
            str(dest),
            "--prebuilt",
            str(tarball),
            "--prebuilt-sha256",
            sha256(tarball),
            "--version",
            VERSION,
            offline=True,
        )
    )
    assert out["changed"] is True
    assert wheels(dest) == wheels(warm)
    again = result(
        build("--source", str(REPO), "--dest", str(dest), "--prebuilt", str(tarball), offline=True)
    )
    assert again["changed"] is False


def test_a_prebuilt_directory_with_a_tampered_wheel_is_refused(warm: Path, tmp_path: Path) -> None:
    prebuilt = tmp_path / "prebuilt"
    shutil.copytree(warm, prebuilt)
    victim = next(p for p in prebuilt.glob("requests-*.whl"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    dest = tmp_path / "dest"
    proc = build("--source", str(REPO), "--dest", str(dest), "--prebuilt", str(prebuilt))
    assert proc.returncode != 0
    assert "wheels differ from its requirements.txt" in proc.stderr
    assert wheels(dest) == {}


@pytest.fixture
def served(warm: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The wheelhouse tarball on a loopback HTTP server: (URL, tarball)."""
    root = tmp_path / "www"
    root.mkdir()
    tarball = tarball_of(warm, root / f"di2siem-wheelhouse-{VERSION}.tar.gz")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{tarball.name}", tarball
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_needs_its_sha256(served: tuple[str, Path], tmp_path: Path) -> None:
    url, tarball = served
    dest = tmp_path / "dest"
    out = result(
        build(
            "--source",
            str(REPO),
            "--dest",
            str(dest),
            "--prebuilt",
            url,
            "--prebuilt-sha256",
            sha256(tarball),
            offline=True,
        )
    )
    assert out["changed"] is True
    assert len(wheels(dest)) == len(lock_pins()) + 1
    for sha in ("", "0" * 64):
        other = tmp_path / f"dest-{sha[:1] or 'none'}"
        proc = build(
            "--source",
            str(REPO),
            "--dest",
            str(other),
            "--prebuilt",
            url,
            "--prebuilt-sha256",
            sha,
            offline=True,
        )
        assert proc.returncode != 0
        assert "di2siem_wheelhouse_sha256" in proc.stderr
        assert wheels(other) == {}


def test_the_version_pin_refuses_another_version_before_any_change(
    warm: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    proc = build(
        "--source", str(REPO), "--dest", str(dest), "--prebuilt", str(warm), "--version", "9.9.9"
    )
    assert proc.returncode != 0
    assert f"carries di2siem {VERSION}, not 9.9.9: set di2siem_version" in proc.stderr
    assert wheels(dest) == {}


def test_the_molecule_no_index_listener_catches_a_build_that_needs_the_index(
    tmp_path: Path,
) -> None:
    """molecule/shared/no_index.py and the pip environment of tasks/no_index.yml, as the
    trixie scenario's converge uses them: a cold build (it needs the index) fails there and
    the listener records its requests, so the scenario's "no contact" can fail."""
    yaml = pytest.importorskip("yaml")
    shared = REPO / "molecule" / "shared"
    tasks = yaml.safe_load((shared / "tasks" / "no_index.yml").read_text(encoding="utf-8"))
    (pip_env,) = [
        t["ansible.builtin.set_fact"]["__mol_no_index_env"]
        for t in tasks
        if "ansible.builtin.set_fact" in t
    ]
    listener = [sys.executable, str(shared / "no_index.py")]
    started = json.loads(
        subprocess.run(
            [*listener, "start", "--lifetime", "120"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    )
    port_template = "{{ (__mol_no_index.stdout | from_json).port }}"
    env = {k: str(v).replace(port_template, str(started["port"])) for k, v in pip_env.items()}
    assert sorted(env) == sorted(k for k in env if k.startswith("PIP_"))
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--python",
            sys.executable,
            "--source",
            str(REPO),
            "--dest",
            str(tmp_path / "cold"),
        ],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    stopped = subprocess.run(
        [*listener, "stop", started["dir"]], capture_output=True, text=True, check=True, timeout=30
    )
    contacts = json.loads(stopped.stdout)["contacts"]
    assert proc.returncode != 0, proc.stdout
    assert wheels(tmp_path / "cold") == {}
    requested = {c["request"].split()[1].split("/")[1] for c in contacts}
    assert requested == {"simple", "extra"}, contacts
    assert not Path(started["dir"]).exists()
