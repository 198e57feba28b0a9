"""metrics_file (Prometheus textfile), heartbeat_url (dead man's switch) and log_format json,
against the simulators and a loopback heartbeat receiver (real HTTP)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import SECRETS, Env, assert_no_secrets, counts, recent_events
from di2siem import __version__
from di2siem.timeutil import parse_ms
from hostile import HostilePeer

HB_TOKEN = "hb-token-0d9c8e7f6a5b4c3d"  # the secret part of a healthchecks.io-style URL

LISTED = {
    # family name as the parser reports it (counters lose _total) -> type
    "di2siem_events_fetched": "counter",
    "di2siem_events_shipped": "counter",
    "di2siem_events_duplicate": "counter",
    "di2siem_events_skipped": "counter",
    "di2siem_batches": "counter",
    "di2siem_retries": "counter",
    "di2siem_run_failures": "counter",
    "di2siem_last_run_timestamp_seconds": "gauge",
    "di2siem_last_success_timestamp_seconds": "gauge",
    "di2siem_cursor_timestamp_seconds": "gauge",
    "di2siem_run_duration_seconds": "gauge",
    "di2siem_build_info": "gauge",
}


def read_metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed with Prometheus's own text parser: {(sample name, sorted labels): value}."""
    text = path.read_text()
    assert_no_secrets(text)
    assert HB_TOKEN not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in LISTED.items():
        assert name in families and families[name].type == kind, name
        assert families[name].documentation, f"{name} has no HELP"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }


def org_value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted({"org": "_default", **labels}.items())))]


@pytest.fixture
def heartbeat() -> Any:
    with HostilePeer(lambda ex: ex.reply(200, "OK")) as peer:
        yield peer


def test_metrics_every_run_and_heartbeat_success_then_fail(
    env: Env, capsys, heartbeat: HostilePeer
) -> None:
    prom = env.tmp / "textfile" / "di2siem.prom"
    prom.parent.mkdir()
    env.jc.add_events(recent_events(40))
    env.write(metrics_file=str(prom), heartbeat_url=f"{heartbeat.url}/ping/{HB_TOKEN}")

    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert HB_TOKEN not in err
    samples = read_metrics(prom)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert os.listdir(prom.parent) == ["di2siem.prom"], "no temp file left behind"
    assert org_value(samples, "di2siem_events_shipped_total") == 40 == len(env.shipped())
    assert org_value(samples, "di2siem_events_fetched_total") == counts(err)["fetched"]
    assert org_value(samples, "di2siem_batches_total") == counts(err)["batches"]
    assert org_value(samples, "di2siem_events_skipped_total", reason="too_large") == 0
    assert org_value(samples, "di2siem_retries_total", side="jumpcloud") == 0
    assert org_value(samples, "di2siem_run_failures_total") == 0
    assert org_value(samples, "di2siem_last_run_success") == 1
    success_1 = org_value(samples, "di2siem_last_success_timestamp_seconds")
    assert success_1 == org_value(samples, "di2siem_last_run_timestamp_seconds") > 0
    cursor = env.state()["orgs"]["_default"]["cursor"]
    assert org_value(samples, "di2siem_cursor_timestamp_seconds") == parse_ms(cursor) / 1000
    assert samples[("di2siem_build_info", (("version", __version__),))] == 1
    assert [(r.method, r.path) for r in heartbeat.requests()] == [("GET", f"/ping/{HB_TOKEN}")]

    # the SIEM refuses the key, and JumpCloud answers 503 once (one retry on that side)
    env.cx.private_key = "a-key-the-collector-does-not-have"
    env.jc.add_events(recent_events(5, seed=3, minutes=1, end_ago_ms=10))
    env.jc.inject_fault(503, count=1)
    rc, _, err = env.run(capsys)
    assert rc == 1 and "SIEM answered 403" in err and HB_TOKEN not in err
    samples = read_metrics(prom)
    assert org_value(samples, "di2siem_run_failures_total") == 1
    assert org_value(samples, "di2siem_last_run_success") == 0
    assert org_value(samples, "di2siem_last_success_timestamp_seconds") == success_1
    assert org_value(samples, "di2siem_last_run_timestamp_seconds") > success_1
    assert org_value(samples, "di2siem_events_shipped_total") == 40
    assert org_value(samples, "di2siem_retries_total", side="jumpcloud") == 1
    assert [r.path for r in heartbeat.requests()][1:] == [f"/ping/{HB_TOKEN}/fail"]

    rc, out, _ = env.run(capsys, "--json", command="status")
    assert rc == 1 and HB_TOKEN not in out


def test_heartbeat_that_cannot_be_delivered_never_fails_the_run(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(10))
    with HostilePeer(lambda ex: ex.reply(500, f"cannot ping {ex.request.path}")) as peer:
        env.write(heartbeat_url=f"{peer.url}/ping/{HB_TOKEN}")
        rc, _, err = env.run(capsys)
        assert rc == 0 and len(env.shipped()) == 10
        assert "heartbeat not delivered: heartbeat_url answered 500" in err
        assert [r.path for r in peer.requests()] == [f"/ping/{HB_TOKEN}"]
        dead_port = peer.port
    state = env.state_file.read_bytes()
    env.write(heartbeat_url=f"http://127.0.0.1:{dead_port}/ping/{HB_TOKEN}")  # nobody listens
    rc, _, err = env.run(capsys)
    refused = f"heartbeat not delivered: heartbeat 127.0.0.1:{dead_port}: connection refused"
    assert rc == 0 and refused in err
    assert HB_TOKEN not in err
    assert json.loads(env.state_file.read_bytes())["cursor"] == json.loads(state)["cursor"]


def test_failure_before_any_org_still_writes_metrics(
    env: Env, capsys, heartbeat: HostilePeer
) -> None:
    prom = env.tmp / "di2siem.prom"
    env.jc.add_events(recent_events(10))
    env.write(metrics_file=str(prom), heartbeat_url=f"{heartbeat.url}/{HB_TOKEN}")
    assert env.run(capsys)[0] == 0
    env.state_file.write_text("{broken")
    rc, _, err = env.run(capsys)
    assert rc == 1 and "state file unusable" in err
    samples = read_metrics(prom)
    assert org_value(samples, "di2siem_last_run_success") == 0
    assert [r.path for r in heartbeat.requests()] == [f"/{HB_TOKEN}", f"/{HB_TOKEN}/fail"]


def test_config_keys_refused_without_echoing_the_url(env: Env, capsys) -> None:
    for bad in (f"ftp://example.invalid/{HB_TOKEN}", f"http://example.invalid/{HB_TOKEN}"):
        env.write(heartbeat_url=bad)
        rc, out, err = env.run(capsys, command="check")
        assert rc == 2 and err.startswith("di2siem: config error: heartbeat_url") and out == ""
        assert HB_TOKEN not in err
    env.write(metrics_file=str(env.tmp))
    rc, _, err = env.run(capsys)
    assert rc == 2 and err.startswith("di2siem: config error: metrics_file")
    env.write(log_format="xml")
    rc, _, err = env.run(capsys)
    assert rc == 2 and err.startswith("di2siem: config error: log_format")


def test_log_format_json_one_object_per_line(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(15))
    env.write(log_format="json")
    env.cx.inject_fault(503, count=1, body={"message": f"bad key {SECRETS[1]}"})
    rc, _, err = env.run(capsys)
    assert rc == 0
    records = [json.loads(line) for line in err.splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    summary = next(r for r in records if r["msg"] == "run summary")
    assert summary["shipped"] == 15 and summary["org"] == "_default"
    assert summary["status"] == "ok" and isinstance(summary["duration_s"], float)
    assert any(r["level"] == "warning" and r["msg"] == "retrying" for r in records)


def test_example_alert_rules_use_the_metrics_we_write(env: Env, capsys, tmp_path) -> None:
    import re

    import yaml

    rules_file = Path(__file__).parents[2] / "docs" / "prometheus" / "di2siem-alerts.yml"
    prom = tmp_path / "di2siem.prom"
    env.jc.add_events(recent_events(5))
    env.write(metrics_file=str(prom))
    assert env.run(capsys)[0] == 0
    written = {name for name, _ in read_metrics(prom)}
    rules = yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"Di2siemNoSuccess", "Di2siemFailuresRising"}
    for rule in rules:
        used = set(re.findall(r"di2siem_[a-z_]+", rule["expr"]))
        assert used and used <= written, f"{rule['alert']} uses {used - written}"
    # promtool itself checks these rules, and unit-tests them: tests/e2e/test_promtool.py


def test_check_reports_metrics_dir_and_never_pings_the_heartbeat(
    env: Env, capsys, heartbeat: HostilePeer
) -> None:
    textfile_dir = env.tmp / "textfile"
    textfile_dir.mkdir()
    env.write(
        metrics_file=str(textfile_dir / "di2siem.prom"),
        heartbeat_url=f"{heartbeat.url}/ping/{HB_TOKEN}",
    )
    rc, out, _ = env.run(capsys, command="check")
    assert rc == 0, out
    assert f"di2siem check metrics_file: ok - {textfile_dir} is writable by this user\n" in out
    assert "di2siem check heartbeat_url: ok - a well-formed URL; not pinged" in out
    assert HB_TOKEN not in out
    assert heartbeat.requests() == [], "check pinged the dead man's switch"
    assert os.listdir(textfile_dir) == [], "check wrote into the textfile directory"


def test_check_fails_on_a_missing_metrics_dir_naming_key_and_fix(env: Env, capsys) -> None:
    missing = env.tmp / "no-such-dir"
    env.write(metrics_file=str(missing / "di2siem.prom"))
    rc, out, _ = env.run(capsys, command="check")
    assert rc == 1, out
    assert (
        f"di2siem check metrics_file: FAILED - {missing} does not exist "
        "(metrics_file: create it, or fix the path)\n"
    ) in out
    assert "di2siem check siem: ok" in out, "the other checks still ran"
    assert out.endswith("di2siem check: FAILED\n")
    assert not missing.exists(), "check must not create it"
    # --offline validates the file only (the installer's validate: step runs it on a temp file)
    assert env.run(capsys, "--offline", command="check")[0] == 0


def problems_as_unprivileged_user(paths: list[str]) -> tuple[list[str | None], str]:
    """directory_problem of each path, checked by the kernel for an unprivileged user: this
    one, or nobody (a forked child that drops to it) when the tests run as root."""
    import pwd

    from di2siem.ops.metrics import directory_problem

    if os.geteuid() != 0:
        return [directory_problem(p) for p in paths], pwd.getpwuid(os.geteuid()).pw_name
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the child drops to nobody, reports, and exits at once
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_fd, json.dumps([directory_problem(p) for p in paths]).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as answer:
        problems = json.loads(answer.read())
    os.waitpid(child, 0)
    return problems, pwd.getpwuid(65534).pw_name


def test_metrics_dir_problems_are_named_for_the_running_user(tmp_path: Path) -> None:
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="di2siem-metrics-"))  # 0700 by default
    try:
        top.chmod(0o755)
        locked = top / "locked"
        locked.mkdir(mode=0o555)
        closed = top / "closed"
        closed.mkdir(mode=0o700)
        (closed / "textfile").mkdir()
        (top / "a-file").write_text("")
        open_dir = top / "open"
        open_dir.mkdir(mode=0o777)
        open_dir.chmod(0o777)
        paths = [
            str(locked / "di2siem.prom"),
            str(closed / "textfile" / "di2siem.prom"),
            str(top / "a-file" / "di2siem.prom"),
            str(open_dir / "di2siem.prom"),
        ]
        problems, user = problems_as_unprivileged_user(paths)
    finally:
        shutil.rmtree(top)
    assert problems[0] == (
        f"{locked} is not writable by user {user} (metrics_file: give this user write access, "
        "e.g. the directory's group with g+w, as the role does)"
    )
    # closed/ is 0700: only its owner (root, when the child is nobody) may traverse it
    assert problems[1] == (
        f"{closed / 'textfile'} cannot be reached by user {user}: a parent directory denies "
        "it (metrics_file: let this user traverse its parents, or use another directory)"
        if os.geteuid() == 0
        else None
    )
    assert problems[2] == f"{top / 'a-file'} is not a directory (metrics_file: fix the path)"
    assert problems[3] is None
