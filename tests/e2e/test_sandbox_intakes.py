"""`di2siem sandbox --intake NAME`: every intake's simulator beside JumpCloud, from the command
line, with the collector config it prints; the collector run against that config delivers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from conftest import console_run
from di2siem_sandbox import build_config, intakes, main

BACKLOG = 30


@contextmanager
def sandbox(*args: str) -> Iterator[tuple[dict[str, str], dict, subprocess.Popen]]:
    """`python -m di2siem_sandbox ARGS` on free ports: (its ready line's URLs, the config it
    printed after it (empty when none), the process); stopped with SIGTERM (it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "collector")}
    ports = ["--jumpcloud-port", "0", "--coralogix-port", "0", "--syslog-control-port", "0"]
    for name in intakes.NAMES:
        ports += [f"--{name.replace('_', '-')}-port", "0"]
    command = [sys.executable, "-m", "di2siem_sandbox", *ports, *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("di2siem sandbox ready: "), line
        urls = dict(part.split("=", 1) for part in line.split()[3:])
        config: dict = {}
        if "--intake" in args:
            assert "di2siem run --config FILE" in proc.stdout.readline()
            lines = [proc.stdout.readline()]
            while lines[-1] not in ("}\n", ""):  # the JSON's last line, unindented
                lines.append(proc.stdout.readline())
            config = json.loads("".join(lines))
        yield urls, config, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def stats(url: str) -> dict:
    return requests.get(url + "/_sim/stats", timeout=5).json()


@pytest.mark.parametrize("intake", intakes.NAMES)
def test_each_intake_runs_beside_jumpcloud_and_its_printed_config_delivers(
    intake: str, tmp_path: Path
) -> None:
    sink = tmp_path / "sink.jsonl"
    extra = ["--splunk-hec-ack"] if intake == "splunk_hec" else []
    args = ["--intake", intake, "--backlog", str(BACKLOG), "--backlog-days", "1", "--rate", "0"]
    with sandbox(*args, "--sink-out", str(sink), *extra) as (urls, config, _):
        control = urls.get("syslog-control", urls[intake])  # syslog: its counters' own port
        assert set(urls) - {"syslog-control"} == {"jumpcloud", intake}
        assert config["siem"]["format"] == intake
        assert config["jumpcloud"]["base_url"] == urls["jumpcloud"]
        if intake == "syslog":
            assert config["siem"]["url"] == urls["syslog"] and urls["syslog"].startswith("tls:")
            assert Path(config["siem"]["ca_bundle"]).is_file()  # the throwaway CA, made now
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        result = console_run(path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert stats(control)[intakes.DELIVERED[intake]] == BACKLOG
        again = console_run(path)  # nothing new: nothing shipped twice
        assert again.returncode == 0, again.stderr
        assert stats(control)[intakes.DELIVERED[intake]] == BACKLOG
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    assert len(records) == BACKLOG  # --sink-out: every accepted record, one JSON line each
    if intake == "syslog":  # the throwaway TLS folder went with the process
        assert not Path(config["siem"]["ca_bundle"]).exists()


def test_count_only_keeps_nothing_and_write_config_matches_the_printed_one(
    tmp_path: Path,
) -> None:
    written = tmp_path / "written.json"
    args = ["--intake", "elasticsearch", "--backlog", "5", "--backlog-days", "1", "--rate", "0"]
    with sandbox(*args, "--sink-count-only", "--write-config", str(written)) as (urls, config, _):
        saved = json.loads(written.read_text())
        assert saved.pop("state_dir") == str(tmp_path / "di2siem-state")
        assert saved == config
        assert console_run(written).returncode == 0
        assert stats(urls["elasticsearch"])["items_created"] == 5
    assert oct(written.stat().st_mode & 0o777) == "0o600"


def test_the_default_stays_coralogix_and_prints_only_its_ready_line(tmp_path: Path) -> None:
    with sandbox("--backlog", "1", "--rate", "0") as (urls, config, proc):
        assert set(urls) == {"jumpcloud", "coralogix"} and config == {}
        proc.send_signal(signal.SIGTERM)
        assert proc.communicate(timeout=10)[0] == ""  # nothing after the ready line


def test_build_config_for_an_intake_and_bad_combinations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = build_config("http://127.0.0.1:1", "http://127.0.0.1:2", siem_format="otlp")
    assert config["siem"] == intakes.siem_section("otlp", "http://127.0.0.1:2")
    assert config["siem"]["url"] == "http://127.0.0.1:2/v1/logs"
    assert main(["--intake", "otlp", "--only", "coralogix"]) == 2
    assert "--only coralogix" in capsys.readouterr().err
    with pytest.raises(ValueError):
        intakes.siem_section("qradar", "http://127.0.0.1:2")
