"""Shared fixtures: both simulators on loopback (port 0), config files, collector runners.

The collector always talks real HTTP to the simulators; nothing on the HTTP path is patched.
Every runner checks that no secret leaked into stdout/stderr.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest

from di2siem.cli import main
from di2siem.state.reading import snapshot
from di2siem_sandbox import CoralogixSink, JumpCloudSimulator

JC_KEY = "jc-secret-5f1a9c2e7b44d0"
CX_KEY = "cx-secret-8d3b4e6f0a91c2"
SA_CLIENT_ID = "sa-client-3c7e91d0"
SA_SECRET = "sa-secret-9e2b7a4c61f8d3"
SECRETS = (JC_KEY, CX_KEY, SA_SECRET)
ORG_A = "aaaaaaaaaaaaaaaaaaaaaaaa"
ORG_B = "bbbbbbbbbbbbbbbbbbbbbbbb"
# the enum of the DI API's EventQuery.service today (shared/reference/jumpcloud-di-api.md)
REFERENCE_SERVICES = (
    "all", "alerts", "directory", "ldap", "mdm", "notifications", "object_storage",
    "password_manager", "password_vault", "radius", "reports", "saas_app_management",
    "software", "sso", "systems", "access_management", "asset_management", "workflows",
    "genai", "aigw", "ai_admin", "generic_di",
)  # fmt: skip


def di2siem_executable() -> str:
    exe = shutil.which("di2siem")
    if exe is None:
        candidate = Path(sys.executable).with_name("di2siem")
        if candidate.exists():
            return str(candidate)
        pytest.skip("di2siem console script is not installed (pip install -e .)")
    return exe


@contextmanager
def sandbox_process(*args: str) -> Iterator[str]:
    """``python -m di2siem_sandbox`` on free ports with ARGS; yields its ready line, then
    stops it with SIGTERM (it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "collector")}
    command = [sys.executable, "-m", "di2siem_sandbox", "--jumpcloud-port", "0"]
    command += ["--coralogix-port", "0", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "di2siem sandbox ready" in line
        yield line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def console_run(path: Path, timeout: float = 120, **popen: Any) -> subprocess.CompletedProcess:
    """``di2siem run --config path`` as the installed console script; no secret in its output."""
    result = subprocess.run(
        [di2siem_executable(), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )
    assert_no_secrets(result.stdout, result.stderr)
    return result


def start_run(config: Path) -> subprocess.Popen:
    """``di2siem run`` (the installed console script) in the background."""
    return subprocess.Popen(
        [di2siem_executable(), "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_if_running(proc: subprocess.Popen) -> int:
    """kill -9 the run if it is still going (1 if it was); its output holds no secret."""
    killed = 0
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        killed = 1
    out, err = proc.communicate(timeout=60)
    assert_no_secrets(out, err)
    return killed


def kill_at_random(
    config: Path,
    rounds: int,
    seed: int,
    low: float,
    high: float,
    progress: Callable[[], int] | None = None,
) -> int:
    """ROUNDS runs, each kill -9'd after a random LOW..HIGH s (seeded); how many were killed
    mid-run (the others had ended by then). With ``progress`` (e.g. the sink's count of
    accepted requests), the delay counts from the run's first progress: the kill lands
    mid-stream however long the start takes on a loaded machine."""
    rng = random.Random(seed)
    kills = 0
    for _ in range(rounds):
        before = progress() if progress is not None else 0
        proc = start_run(config)
        if progress is not None:
            waited = time.monotonic() + 30
            while progress() == before and proc.poll() is None and time.monotonic() < waited:
                time.sleep(0.005)
        time.sleep(rng.uniform(low, high))
        kills += kill_if_running(proc)
    return kills


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, "a secret leaked into the output"


@pytest.fixture
def jcsim() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator(api_key=JC_KEY) as sim:
        yield sim


@pytest.fixture
def sink() -> Iterator[CoralogixSink]:
    with CoralogixSink(api_key=CX_KEY) as s:
        yield s


def legacy_config(jc_url: str, sink_url: str, **siem: Any) -> dict[str, Any]:
    """The legacy configurations.json shape, pointed at the simulators."""
    return {
        "jumpcloud": {
            "api_key": JC_KEY,
            "json_depth": 10,
            "timestamp_field_name": "timestamp",
            "initial_days_back": -1,
            "base_url": jc_url,
        },
        "siem": {
            "format": "json_lines",
            "url": sink_url + "/logs/datastream",
            "method": "POST",
            "headers": {"private_key": CX_KEY},
            "content_type": "application/json",
            "batch_size": 1000,
            "batch_delay_milliseconds": 0,
            "timestamp_field_name": "jc_timestamp",
            "custom_log_fields": {
                "reqHost": "jumpcloud",
                "customField": "jumpcloud",
                "severity": "info",
            },
            **siem,
        },
    }


FAST = {"retry_base_delay_seconds": 0.01, "retry_max_delay_seconds": 0.5, "max_retries": 3}


class Env:
    """A temp dir with a config file for the simulators, plus runners."""

    def __init__(self, tmp: Path, jc: JumpCloudSimulator, cx: CoralogixSink) -> None:
        self.tmp = tmp
        self.jc = jc
        self.cx = cx
        self.path = tmp / "config.json"
        self.state_dir = tmp / "state"
        # the default org's state file (one file per org under state_dir/orgs/)
        self.state_file = self.state_dir / "orgs" / "_default.json"
        self.legacy_state_file = self.state_dir / "state.json"  # before one file per org

    def write(self, config: dict[str, Any] | None = None, **top: Any) -> Path:
        cfg = config if config is not None else legacy_config(self.jc.url, self.cx.url)
        cfg = {**cfg, **FAST, "state_dir": str(self.state_dir), **top}
        self.path.write_text(json.dumps(cfg, indent=2))
        os.chmod(self.path, 0o600)
        return self.path

    def edit(self, fn) -> None:
        cfg = json.loads(self.path.read_text())
        fn(cfg)
        self.path.write_text(json.dumps(cfg, indent=2))

    def run(self, capsys, *extra: str, command: str = "run") -> tuple[int, str, str]:
        """In-process ``di2siem.cli.main``."""
        capsys.readouterr()
        rc = main([command, "--config", str(self.path), *extra])
        out, err = capsys.readouterr()
        assert_no_secrets(out, err)
        return rc, out, err

    def proc(self, *extra: str, command: str = "run", timeout: float = 60) -> tuple[int, str, str]:
        """The installed console script in a subprocess."""
        result = subprocess.run(
            [di2siem_executable(), command, "--config", str(self.path), *extra],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert_no_secrets(result.stdout, result.stderr)
        return result.returncode, result.stdout, result.stderr

    def state(self) -> dict[str, Any]:
        """Every org's state: ``{"version", "orgs": {org: {...}}}``."""
        return snapshot(str(self.state_dir))

    def shipped(self) -> list[dict[str, Any]]:
        return self.cx.events()

    def shipped_ids(self) -> list[str]:
        out = []
        for event in self.cx.events():
            out.append(event["id"])
        return out


@pytest.fixture
def env(tmp_path: Path, jcsim: JumpCloudSimulator, sink: CoralogixSink) -> Env:
    return Env(tmp_path, jcsim, sink)


def summary(err: str) -> dict[str, str]:
    """The key=value fields of the last run summary line."""
    lines = [line for line in err.splitlines() if "di2siem run summary" in line]
    assert lines, f"no summary line in:\n{err}"
    fields = {}
    for part in lines[-1].split(" "):
        if "=" in part:
            key, _, value = part.partition("=")
            fields[key] = value
    return fields


def counts(err: str) -> dict[str, int]:
    s = summary(err)
    keys = ("fetched", "shipped", "duplicates", "skipped", "batches", "retries")
    return {k: int(s[k]) for k in keys}


def shipping_state(state_dir: Path) -> dict[str, Any] | None:
    """What the state holds as shipped (cursor, floor, recent ids per org), without what every
    run updates (its run record ``ops`` and ``served``); None when there is no state yet."""
    orgs = snapshot(str(state_dir))["orgs"]
    if not orgs:
        return None
    keep = ("cursor", "floor", "recent_ids")
    return {name: {k: org.get(k) for k in keep} for name, org in orgs.items()}


def assert_nothing_recorded(state_dir: Path) -> None:
    """No progress in the state: no file, or orgs without cursor, floor or shipped ids."""
    for org in (shipping_state(state_dir) or {}).values():
        assert org == {"cursor": None, "floor": None, "recent_ids": {}}, org


def as_json_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def recent_events(n: int, seed: int = 1, minutes: int = 60, end_ago_ms: int = 1000) -> list[dict]:
    """n generated events spread over the last `minutes`, ascending."""
    from di2siem.timeutil import now_ms
    from di2siem_sandbox.events import generate_events

    end = now_ms() - end_ago_ms
    return generate_events(n, end - minutes * 60_000, end, seed=seed)


@pytest.hookimpl(trylast=True)  # after -m/-k deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Molecule scenarios go last and start right away: they mostly wait for the minutely
    schedule, so they run in the background of the collector tests instead of after them."""
    molecule = [item for item in items if item.get_closest_marker("molecule")]
    if not molecule:
        return
    items[:] = [item for item in items if not item.get_closest_marker("molecule")] + molecule
    if config.option.collectonly:
        return
    scenarios = [item.callspec.params["scenario"] for item in molecule if hasattr(item, "callspec")]
    molecule[0].module.start_early(scenarios)
