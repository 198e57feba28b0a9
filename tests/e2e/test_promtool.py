"""Prometheus's own promtool (Debian package `prometheus`, downloaded and unpacked by
tests/support/fetch_promtool.sh, never installed) checks what operators load into Prometheus: the
example alert rules (syntax, and unit tests that each alert fires when it should and stays
silent on a healthy host) and the textfile a real collector run writes, after a successful
and after a failed run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import Env, recent_events

REPO = Path(__file__).resolve().parents[2]
FETCH = REPO / "tests" / "support" / "fetch_promtool.sh"
TOOLS = REPO / ".cache" / "tools"
RULES = REPO / "docs" / "prometheus" / "di2siem-alerts.yml"
RULE_TESTS = REPO / "tests" / "e2e" / "prometheus" / "di2siem-alerts.test.yml"
NO_APT = 3  # fetch_promtool.sh: this machine has no apt-get


def fetch_promtool(dest: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ) if path is None else {**os.environ, "PATH": path}
    return subprocess.run(
        [str(FETCH), str(dest)], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="session")
def promtool() -> str:
    """The cached promtool; fetched on first use. Skipped only where there is no apt-get."""
    fetched = fetch_promtool(TOOLS)
    if fetched.returncode == NO_APT:
        pytest.skip(fetched.stderr.strip())
    assert fetched.returncode == 0, f"cannot fetch promtool:\n{fetched.stderr}"
    return fetched.stdout.strip()


def promtool_run(promtool: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [promtool, *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    out = promtool_run(promtool, "check", "rules", str(RULES))
    assert "SUCCESS: 4 rules found" in out, out


def test_alert_rules_unit_tests(promtool: str) -> None:
    out = promtool_run(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in out, out


def test_rules_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """The unit tests really judge the rules: with one threshold changed they fail."""
    rules = tmp_path / RULES.name
    text = RULES.read_text()
    assert text.count("increase(di2siem_run_failures_total[30m]) >= 3") == 1
    rules.write_text(text.replace("[30m]) >= 3", "[30m]) >= 4"))
    tests = tmp_path / "unit.yml"
    tests.write_text(
        RULE_TESTS.read_text().replace("../../../docs/prometheus/di2siem-alerts.yml", rules.name)
    )
    done = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "Di2siemFailuresRising" in done.stdout + done.stderr


def test_textfile_of_real_runs_passes_promtool_check_metrics(
    env: Env, capsys, promtool: str
) -> None:
    prom = env.tmp / "textfile" / "di2siem.prom"
    prom.parent.mkdir()
    env.jc.add_events(recent_events(30))
    env.write(metrics_file=str(prom))
    assert env.run(capsys)[0] == 0
    promtool_run(promtool, "check", "metrics", stdin=prom.read_text())
    ok_text = prom.read_text()
    env.cx.rotate_keys(api_key="rotated", private_key="rotated")  # the SIEM refuses the key
    env.jc.add_events(recent_events(5, seed=2))
    assert env.run(capsys)[0] == 1
    failed_text = prom.read_text()
    assert failed_text != ok_text
    assert 'di2siem_run_failures_total{org="_default"} 1' in failed_text
    promtool_run(promtool, "check", "metrics", stdin=failed_text)


def test_fetch_fails_loudly_when_apt_cannot_download(tmp_path: Path) -> None:
    """With apt-get present but failing, fetching fails with a message (the tests then fail,
    not skip); without apt-get it says so with its own exit code (the tests skip)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "dpkg-deb"):
        (bin_dir / tool).write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
        (bin_dir / tool).chmod(0o755)
    system = "/usr/bin:/bin"
    failed = fetch_promtool(tmp_path / "tools", path=f"{bin_dir}:{system}")
    assert failed.returncode == 1, failed.stderr
    assert "'apt-get download prometheus' failed" in failed.stderr
    assert "Unable to locate package" in failed.stderr
    assert not (tmp_path / "tools" / "promtool").exists()
    assert os.listdir(tmp_path / "tools") == [], "no temp dir left behind"
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    for tool in ("bash", "realpath", "mkdir", "id"):
        (empty / tool).symlink_to(
            f"/usr/bin/{tool}" if Path(f"/usr/bin/{tool}").exists() else f"/bin/{tool}"
        )
    no_apt = subprocess.run(
        [str(empty / "bash"), str(FETCH), str(tmp_path / "tools2")],
        capture_output=True,
        text=True,
        env={"PATH": str(empty)},
        timeout=30,
    )
    assert no_apt.returncode == NO_APT and "no apt-get" in no_apt.stderr, no_apt.stderr
