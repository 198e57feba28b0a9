"""Hostile heartbeat endpoints and token endpoints, and secrets that would wreck the log
(issue 15): real HTTP on loopback, the installed console script where wall time matters.

- A heartbeat that never answers, trickles its status line or its body cannot keep the
  process alive past ``run_time_budget_seconds + 5 s``; the run's exit code stands.
- A heartbeat that redirects is not followed and its Location is never printed; every part
  of a healthchecks.io, Cronitor, Better Stack, Dead Man's Snitch or Uptime Kuma URL but
  scheme and host stays out of every output.
- A token endpoint answering an access_token that cannot be real (``"``, ``1``, ``info``,
  too short, characters outside RFC 6750's alphabet) fails the run (exit 1) naming the
  problem, and every JSON log line still parses with its level and org ids intact.
- ``expires_in`` 0 (or negative, or a fraction of a second) does not fetch a token per request.
- Configured secrets too short to redact safely are refused at config load (exit 2).
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    CX_KEY,
    JC_KEY,
    ORG_A,
    ORG_B,
    SA_CLIENT_ID,
    SA_SECRET,
    Env,
    assert_no_secrets,
    di2siem_executable,
    recent_events,
)
from di2siem.config import load
from di2siem.log import Logger
from di2siem.ops import heartbeat
from di2siem.transport.exchange import BUDGET_GRACE_S
from di2siem_sandbox import CoralogixSink, JumpCloudSimulator
from hostile import Exchange, HostilePeer

# Long enough that a loaded machine (CI beside a demo) still posts its batch within it: the
# "late" run must spend its budget and grace on the trickling SIEM, not before reaching it.
BUDGET_S = 3.0
# The budget starts before the run's first JumpCloud request; the wall time is measured from
# that request (seen by the run's own simulator) to the process's exit, so interpreter start-up
# on a loaded machine is not counted; teardown after the last request is, within this margin.
TEARDOWN_S = 1.5
BOUND_S = BUDGET_S + BUDGET_GRACE_S + TEARDOWN_S
HB_UUID = "5f0c2a9e-7d41-4b8e-9a36-0e1f2d3c4b5a"  # healthchecks.io's /<uuid>
LEVELS = {"debug", "info", "warning", "error"}


def json_lines(err: str) -> list[dict[str, Any]]:
    """Every stderr line as JSON: each must parse, with its ts, level and logger intact."""
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    for record in records:
        assert record["level"] in LEVELS and record["logger"] == "di2siem", record
        assert time.strptime(record["ts"], "%Y-%m-%dT%H:%M:%SZ")
    return records


# -- the heartbeat cannot outlive the budget ------------------------------------------------


def never_answers(held: list[float]):
    def behave(ex: Exchange) -> None:
        started = time.monotonic()
        ex.hold()
        held.append(time.monotonic() - started)

    return behave


def trickles_status_line(held: list[float]):
    def behave(ex: Exchange) -> None:
        started = time.monotonic()
        ex.trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", every_s=0.5)
        held.append(time.monotonic() - started)

    return behave


def trickles_body(held: list[float]):
    def behave(ex: Exchange) -> None:
        started = time.monotonic()
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n")
        ex.trickle(b"x" * 100, every_s=0.5)
        held.append(time.monotonic() - started)

    return behave


def siem_trickles(ex: Exchange) -> None:
    """A SIEM that takes the batch and answers one byte a second: the run uses its grace."""
    ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    ex.trickle(b"x" * 100)


def timed_run(config: Path, into: dict[str, Any], name: str) -> None:
    """(exit code, output, monotonic time of the process's exit, of its spawn) into
    `into[name]`."""
    spawned = time.monotonic()
    result = subprocess.run(
        [di2siem_executable(), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    into[name] = (result.returncode, result.stderr + result.stdout, time.monotonic(), spawned)


def test_hostile_heartbeats_cannot_hold_the_process_past_the_budget(
    tmp_path: Path, sink: CoralogixSink
) -> None:
    names = ("silent", "status", "body", "late")
    # one JumpCloud per run: its first arrival is when that run was already within its budget
    jumpclouds = {name: JumpCloudSimulator(api_key=JC_KEY) for name in names}
    for sim in jumpclouds.values():
        sim.start()
        sim.add_events(recent_events(5))
    try:
        _heartbeats_against(tmp_path, jumpclouds, sink)
    finally:
        for sim in jumpclouds.values():
            sim.stop()


def _heartbeats_against(
    tmp_path: Path, jumpclouds: dict[str, JumpCloudSimulator], sink: CoralogixSink
) -> None:
    held: dict[str, list[float]] = {name: [] for name in ("silent", "status", "body", "late")}
    peers = {
        "silent": HostilePeer(never_answers(held["silent"])),
        "status": HostilePeer(trickles_status_line(held["status"])),
        "body": HostilePeer(trickles_body(held["body"])),  # a failed run pings /fail here
        "late": HostilePeer(never_answers(held["late"])),  # after a run that used its grace
    }
    refusing_siem = HostilePeer(lambda ex: ex.reply(403, "forbidden"))
    slow_siem = HostilePeer(siem_trickles)
    with peers["silent"], peers["status"], peers["body"], peers["late"], refusing_siem, slow_siem:
        configs = {}
        for name, peer in peers.items():
            env = Env(tmp_path / name, jumpclouds[name], sink)
            env.tmp.mkdir()
            env.write(run_time_budget_seconds=BUDGET_S, heartbeat_url=f"{peer.url}/{HB_UUID}")
            siem = {"body": refusing_siem, "late": slow_siem}.get(name)
            if siem is not None:
                env.edit(lambda c, s=siem: c["siem"].update(url=s.url + "/logs/datastream"))
            configs[name] = env.path
        # side by side: each run is measured on its own, the test takes one run's time
        results: dict[str, Any] = {}
        runs = [
            threading.Thread(target=timed_run, args=(path, results, name))
            for name, path in configs.items()
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        paths = {name: [r.path for r in peer.requests()] for name, peer in peers.items()}

    expected_rc = {"silent": 0, "status": 0, "body": 1, "late": 1}
    lived = {}  # from the spawn: the budget runs from the run's start, its imports included
    for name, (rc, output, exited, spawned) in list(results.items()):
        assert jumpclouds[name].arrivals, f"{name}: the run never reached JumpCloud: {output}"
        took = exited - jumpclouds[name].arrivals[0][0]
        results[name] = (rc, output, took)
        lived[name] = exited - spawned
        assert rc == expected_rc[name], f"{name}: {output}"
        assert took < BOUND_S, f"{name}: the process took {took:.1f}s"
        assert HB_UUID not in output
        assert_no_secrets(output)
        assert "heartbeat not delivered" in output, f"{name}: {output}"
    # the run was quick: the ping alone is cut at its own short deadline
    for name in ("silent", "status", "body"):
        assert paths[name] == [f"/{HB_UUID}" + ("/fail" if name == "body" else "")]
        assert results[name][2] < heartbeat.TIMEOUT_S + TEARDOWN_S, name
        assert held[name] and held[name][0] < heartbeat.TIMEOUT_S + 1.5, (name, held[name])
    assert "did not finish answering within" in results["silent"][1]
    # the run used its budget and grace on the SIEM: nothing is left for the ping
    assert "SIEM did not finish answering within run_time_budget_seconds" in results["late"][1]
    assert lived["late"] > BUDGET_S + BUDGET_GRACE_S - 1  # it did use them
    assert held["late"] == [] or held["late"][0] < 1.0


# -- heartbeat URLs: every part but scheme and host is a secret -----------------------------

# (path and query of a real service's heartbeat URL, the parts that are its secret)
URL_FORMS = {
    "healthchecks-uuid": (f"/{HB_UUID}", [HB_UUID]),
    "healthchecks-slug": (
        "/ping/fqOOd6-F4MMNuCEnzTU01w/db-backups-2",
        ["fqOOd6-F4MMNuCEnzTU01w", "db-backups-2"],
    ),
    "cronitor": (
        "/p/83a1b2c3d4e5f60718293a4b5c6d7e8f/d3x0c1?state=complete",
        ["83a1b2c3d4e5f60718293a4b5c6d7e8f"],
    ),
    "cronitor-auth-key": (
        "/nightly-job/complete?auth_key=f3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8",
        ["f3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8"],
    ),
    "better-stack": ("/api/v1/heartbeat/kZ6cJ4rF1jUYn2Q3b3Q8Ue4z", ["kZ6cJ4rF1jUYn2Q3b3Q8Ue4z"]),
    "dead-mans-snitch": ("/c2354d53d2", ["c2354d53d2"]),
    "uptime-kuma": ("/api/push/Rv9FpL1d7s?status=up&msg=OK&ping=", ["Rv9FpL1d7s"]),
}


@pytest.mark.parametrize("form", URL_FORMS, ids=list(URL_FORMS))
def test_a_redirecting_heartbeat_is_not_followed_and_no_url_part_is_printed(
    env: Env, capsys, form: str
) -> None:
    tail, tokens = URL_FORMS[form]
    env.jc.add_events(recent_events(5))
    with HostilePeer(lambda ex: ex.reply(200, "OK")) as elsewhere:

        def redirect(ex: Exchange) -> None:  # the tokens again, in a path of its own
            moved = "/moved/" + "/".join(tokens) + "?key=" + tokens[0]
            ex.reply(302, f"moved to {moved}", {"Location": elsewhere.url + moved})

        with HostilePeer(redirect) as hb:
            env.write(heartbeat_url=hb.url + tail, log_format="json", log_level="debug")
            rc, out, err = env.run(capsys)
            assert [r.path for r in hb.requests()] == [tail]
        assert elsewhere.requests() == [], "the redirect was followed"
    assert rc == 0 and len(env.shipped()) == 5
    warnings = [r["msg"] for r in json_lines(err) if r["level"] == "warning"]
    assert warnings == [
        "heartbeat not delivered: heartbeat_url answered 302: redirected (not followed); "
        "set heartbeat_url to the final URL"
    ]
    summary = [r for r in json_lines(err) if r["msg"] == "run summary"]
    assert summary and summary[0]["org"] == "_default" and summary[0]["status"] == "ok"
    for token in tokens:
        assert token not in out + err, f"{form}: a part of heartbeat_url leaked"
    # wherever a token shows up alone it is redacted; the words around it are not secrets
    log = Logger()
    log.set_secrets(load(str(env.path)).secrets)
    for token in tokens:
        redacted = log.redact(f"see /elsewhere/{token}/x?{token}")
        assert token not in redacted and redacted.startswith("see /elsewhere")
    # (a whole query such as state=complete is a secret too; its words alone are not)
    words = "ping p api v1 heartbeat push complete nightly-job state status=up msg=OK fail"
    assert log.redact(words) == words


@pytest.mark.parametrize("form", URL_FORMS, ids=list(URL_FORMS))
def test_a_heartbeat_error_quoting_the_url_prints_no_part_of_it(
    env: Env, capsys, form: str
) -> None:
    tail, tokens = URL_FORMS[form]
    with HostilePeer(lambda ex: None) as gone:
        dead = gone.port  # nobody listens there once the peer is closed
    env.write(heartbeat_url=f"http://127.0.0.1:{dead}{tail}")
    rc, out, err = env.run(capsys)
    assert (
        rc == 0
        and f"heartbeat not delivered: heartbeat 127.0.0.1:{dead}: connection refused" in err
    )
    for token in tokens:
        assert token not in out + err, f"{form}: a part of heartbeat_url leaked"
    # the words around the tokens were not registered as secrets: the line reads as before
    assert " info di2siem run summary org=_default " in err


# -- access tokens that cannot be real ------------------------------------------------------


def token_endpoint(access_token: Any):
    def behave(ex: Exchange) -> None:
        ex.reply(200, {"access_token": access_token, "token_type": "bearer", "expires_in": 3600})

    return behave


def sa_write(env: Env, token_url: str, **top: Any) -> None:
    env.write(**top)
    env.edit(
        lambda c: (
            c["jumpcloud"].pop("api_key"),
            c["jumpcloud"].update(
                client_id=SA_CLIENT_ID,
                client_secret=SA_SECRET,
                token_url=token_url,
                org_ids=[ORG_A, ORG_B],
            ),
        )
    )


IMPOSSIBLE_TOKENS = {
    "quote": ('"', "with characters a bearer token cannot hold"),
    "one": ("1", "shorter than 16 characters"),
    "info": ("info", "shorter than 16 characters"),
    "short": ("abcDEF123-_.~+/", "shorter than 16 characters"),  # 15: one under the floor
    "alphabet": ('tok"en<with>{json}1info', "with characters a bearer token cannot hold"),
}


@pytest.mark.parametrize("case", IMPOSSIBLE_TOKENS, ids=list(IMPOSSIBLE_TOKENS))
def test_an_impossible_access_token_fails_the_run_and_leaves_the_log_intact(
    tmp_path: Path, capsys, case: str
) -> None:
    value, problem = IMPOSSIBLE_TOKENS[case]
    with (
        JumpCloudSimulator(
            org_ids=[ORG_A, ORG_B], service_accounts={SA_CLIENT_ID: SA_SECRET}
        ) as jc,
        CoralogixSink(api_key=CX_KEY) as cx,
        HostilePeer(token_endpoint(value)) as tokens,
    ):
        env = Env(tmp_path, jc, cx)
        for log_format in ("json", "keyvalue"):
            sa_write(env, tokens.url + "/oauth2/token", log_format=log_format, max_retries=0)
            rc, _, err = env.run(capsys)
            assert rc == 1, err
            assert jc.requests == [] and cx.received == []
            expected = f"JumpCloud token endpoint sent an access_token {problem}"
            if log_format == "json":
                records = json_lines(err)
                failures = [r for r in records if expected in r["msg"]]
                assert failures, err
                assert all(r["level"] == "error" for r in failures)
                assert {r.get("org") for r in records} >= {ORG_A, ORG_B}
                assert "[redacted]" not in err
            else:
                lines = err.splitlines()
                assert all(line.split(" ")[1] in LEVELS for line in lines), err
                assert any(expected in line for line in lines) and "[redacted]" not in err
                assert f"org={ORG_A}" in err and f"org={ORG_B}" in err
        assert len(tokens.requests()) >= 2


def test_the_logger_keeps_every_line_whole_whatever_the_secrets() -> None:
    for log_format in ("json", "keyvalue"):
        stream = io.StringIO()
        log = Logger("info", stream)
        log.set_format(log_format)
        log.set_secrets(['"', "1", "info", "di2siem", "level", "=", " "])
        log.info('org 1 said "info"', org=ORG_A, n=11, detail='a "quoted" 1', ok=True)
        line = stream.getvalue().rstrip("\n")
        assert "\n" not in line
        if log_format == "json":
            record = json.loads(line)
            assert record["level"] == "info" and record["logger"] == "di2siem"
            assert set(record) == {"ts", "level", "logger", "msg", "org", "n", "detail", "ok"}
            assert record["n"] == "[redacted][redacted]" and record["ok"] is True
            assert '"' not in record["msg"] and "1" not in record["detail"]
        else:
            ts, level, logger = line.split(" ")[:3]
            assert (level, logger) == ("info", "di2siem") and time.strptime(
                ts, "%Y-%m-%dT%H:%M:%SZ"
            )
            assert " org=" in line and " n=" in line and " detail=" in line


# -- expires_in that states no usable lifetime ----------------------------------------------


@pytest.mark.parametrize("reported", [0, -30, 0.001], ids=["zero", "negative", "a-millisecond"])
def test_expires_in_without_a_usable_lifetime_reuses_the_token(
    tmp_path: Path, sink: CoralogixSink, capsys, reported: float
) -> None:
    with JumpCloudSimulator(
        org_ids=[ORG_A, ORG_B],
        service_accounts={SA_CLIENT_ID: SA_SECRET},
        token_reported_ttl_s=reported,
    ) as jc:
        env = Env(tmp_path, jc, sink)
        jc.add_events(recent_events(60, seed=1), org=ORG_A)
        jc.add_events(recent_events(40, seed=2), org=ORG_B)
        sa_write(env, jc.url + "/oauth2/token")
        env.edit(lambda c: c["jumpcloud"].update(page_size=10))
        rc, out, err = env.run(capsys)
        assert rc == 0, err
        assert len(env.shipped()) == 100
        pages = len([r for r in jc.requests if r.get("org") in (ORG_A, ORG_B)])
        assert pages >= 10  # several pages per org, all with one token
        assert jc.stats["tokens_issued"] == 1, jc.stats
        for token in jc.issued_tokens:
            assert token not in out + err


# -- configured secrets too short to redact -------------------------------------------------


SHORT_SECRETS = {
    "jumpcloud.api_key": lambda c: c["jumpcloud"].update(api_key="k3y-x"),
    "jumpcloud.client_secret": lambda c: (
        c["jumpcloud"].pop("api_key"),
        c["jumpcloud"].update(client_id=SA_CLIENT_ID, client_secret="s3c-x"),
    ),
    "siem.api_key": lambda c: c["siem"].update(api_key="cx-k3y"),
    "siem.headers.private_key": lambda c: c["siem"]["headers"].update(private_key="pk-9x"),
}


@pytest.mark.parametrize("key", SHORT_SECRETS, ids=list(SHORT_SECRETS))
def test_a_secret_too_short_to_redact_is_refused_at_config_load(env: Env, capsys, key: str) -> None:
    env.write()
    env.edit(SHORT_SECRETS[key])
    for command, extra in (("check", ("--offline",)), ("run", ())):
        rc, out, err = env.run(capsys, *extra, command=command)
        assert rc == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"di2siem: config error: {key}: shorter than 8 characters")
        for value in ("k3y-x", "s3c-x", "cx-k3y", "pk-9x"):
            assert value not in err
    assert not env.state_dir.exists()
