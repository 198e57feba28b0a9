"""`status --online` and online `check` against a JumpCloud of our own that never answers
(accepts the connection, stays silent) or answers one byte a second: each command ends
within its one deadline (probes.PROBE_DEADLINE) whatever the number of orgs, keeps to the
request-rate cap, and names every org it could not reach. Real HTTP on loopback, the
installed console script in a subprocess (its exit includes its threads)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conftest import JC_KEY, Env, legacy_config
from di2siem.cli import main
from di2siem.ops.probes import deadline_seconds
from di2siem.throttle import BURST
from di2siem_sandbox import JumpCloudSimulator
from hostile import Exchange, HostilePeer, RawPeer

TIMEOUT_S = 1.0
BOUND_S = deadline_seconds(TIMEOUT_S)  # 3 s: 2 x timeout_seconds + min(timeout_seconds, 5)
PROCESS_SLACK_S = 1.5  # interpreter start and imports, on a loaded 2-core CI machine
EXIT_SLACK_S = 1.0  # from the deadline to the process's exit, on a loaded 2-core CI machine
RATE = 5.0  # jumpcloud.max_requests_per_second (the default)
ORGS = [f"{0xD1 + i:024x}" for i in range(12)]


def silent(conn: socket.socket, peer: RawPeer) -> None:
    """Accepts the connection, reads the request, never says a word."""
    conn.settimeout(0.2)
    while not peer.stopping.is_set():
        try:
            if conn.recv(65536) == b"":
                return
        except socket.timeout:
            continue


def trickling(ex: Exchange) -> None:
    """A well-formed answer, one byte a second (the status line alone takes 15 s)."""
    ex.trickle(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"count":0}', every_s=1.0)


@contextmanager
def hostile(kind: str) -> Iterator[tuple[str, Any]]:
    """(base URL, a function counting the requests it got); the peer is ``hostile.peer``."""
    if kind == "silent":
        with RawPeer(silent) as raw:
            hostile.peer = raw  # type: ignore[attr-defined]
            yield f"http://127.0.0.1:{raw.port}", lambda: raw.connections
    else:
        with HostilePeer(trickling) as peer:
            hostile.peer = peer  # type: ignore[attr-defined]
            yield peer.url, lambda: len(peer.requests())


def write_config(env: Env, jc_url: str, orgs: list[str]) -> None:
    cfg = legacy_config(jc_url, env.cx.url)
    cfg["jumpcloud"].update(org_ids=orgs, timeout_seconds=TIMEOUT_S)
    env.write(cfg)


def healthy_state(env: Env, capsys) -> None:
    """One successful run of all 12 orgs, against a JumpCloud that answers."""
    with JumpCloudSimulator(api_key=JC_KEY, org_ids=ORGS) as sim:
        write_config(env, sim.url, ORGS)
        capsys.readouterr()
        assert main(["run", "--config", str(env.path)]) == 0, capsys.readouterr().err


def timed_proc(env: Env, *args: str, command: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    rc, out, err = env.proc(*args, command=command, timeout=60)
    return rc, out, err, time.monotonic() - started


def assert_within_bound(took: float, requests: int, probing: float | None = None) -> None:
    """The whole process within the deadline and its start-up; with ``probing`` (from the
    peer's first request to the exit) the deadline itself, whatever start-up cost on a
    loaded machine."""
    if probing is not None and took > BOUND_S + PROCESS_SLACK_S:
        assert probing <= BOUND_S + EXIT_SLACK_S, f"probed {probing:.1f}s, bound {BOUND_S:g}s"
    else:
        assert took <= BOUND_S + PROCESS_SLACK_S, f"took {took:.1f}s, bound {BOUND_S:g}s"
    assert requests <= RATE * took + BURST, f"{requests} requests in {took:.1f}s: cap broken"


@pytest.mark.parametrize("kind", ("silent", "trickle"))
def test_status_online_has_one_deadline_for_any_org_count(env: Env, capsys, kind: str) -> None:
    healthy_state(env, capsys)
    took = {}
    for orgs in (ORGS[:3], ORGS):
        with hostile(kind) as (url, requests):
            write_config(env, url, orgs)
            if len(orgs) == 3:
                rc, out, err, took[3] = timed_proc(env, "--online", command="status")
                assert rc == 0 and err == "", err  # health is the runs': unchanged
                assert_within_bound(took[3], requests())
                lines = out.splitlines()
                expected = (
                    f"JumpCloud not reached within the {BOUND_S:g} s deadline (2 * "
                    "jumpcloud.timeout_seconds + min(jumpcloud.timeout_seconds, 5 s)) for 3 of "
                    "3 orgs: " + ", ".join(orgs)
                )
                assert lines[-2] == expected, out
                assert lines[-1].endswith("status: healthy (max lag 600s)")
                for org in orgs:
                    assert f"{org}: backlog unknown: JumpCloud not reached within the 3 s " in out
            else:
                rc, out, err, took[12] = timed_proc(env, "--online", "--json", command="status")
                assert rc == 0 and err == "", err
                assert_within_bound(took[12], requests())
                report = json.loads(out)
                assert report["healthy"] is True
                assert report["deadline_seconds"] == BOUND_S
                assert report["unreachable_orgs"] == orgs
                for entry in report["orgs"]:
                    assert entry["backlog"] is None
                    assert entry["backlog_error"].startswith(
                        f"JumpCloud not reached within the {BOUND_S:g} s deadline: "
                    ), entry
    # not growing with the org count: 4 times the orgs, about the same time
    assert took[12] <= took[3] + 1.0, took


@pytest.mark.parametrize("kind", ("silent", "trickle"))
def test_check_has_one_deadline_for_any_org_count(env: Env, kind: str) -> None:
    took = {}
    for orgs in (ORGS[:3], ORGS):
        with hostile(kind) as (url, requests):
            write_config(env, url, orgs)
            rc, out, err, took[len(orgs)] = timed_proc(env, command="check")
            ended = time.monotonic()
            assert rc == 1, out + err
            first = hostile.peer.first_contact  # type: ignore[attr-defined]
            probing = ended - first if first is not None else None
            assert_within_bound(took[len(orgs)], requests(), probing)
            lines = out.splitlines()
            for org in orgs:
                verdict = f"di2siem check jumpcloud org={org}: FAILED - not reached within the "
                assert any(line.startswith(verdict + f"{BOUND_S:g} s deadline: ") for line in lines)
            assert "di2siem check siem: ok" in out  # the SIEM was proved meanwhile
            deadline = [line for line in lines if line.startswith("di2siem check deadline: ")]
            assert deadline == [
                "di2siem check deadline: FAILED - not reached within the deadline (2 * "
                "timeout_seconds + min(timeout_seconds, 5 s), with each side's own "
                f"timeout_seconds): JumpCloud for {len(orgs)} of {len(orgs)} orgs "
                f"({', '.join(orgs)}) in {BOUND_S:g} s"
            ], out
            assert lines[-1] == "di2siem check: FAILED"
    assert took[12] <= took[3] + 1.0, took


def test_check_names_a_silent_siem_and_the_token_endpoint(env: Env) -> None:
    """Both sides silent, service-account mode: the token endpoint and the SIEM are named,
    within the same bound."""
    with RawPeer(silent) as raw:
        url = f"http://127.0.0.1:{raw.port}"
        cfg = legacy_config(url, url)
        del cfg["jumpcloud"]["api_key"]
        cfg["jumpcloud"].update(
            client_id="sa-client-3c7e91d0",
            client_secret="sa-secret-9e2b7a4c61f8d3",
            token_url=url + "/oauth2/token",
            org_ids=ORGS,
            timeout_seconds=TIMEOUT_S,
        )
        cfg["siem"]["timeout_seconds"] = TIMEOUT_S
        env.write(cfg)
        rc, out, err, took = timed_proc(env, command="check")
    assert rc == 1, out + err
    assert took <= BOUND_S + PROCESS_SLACK_S, took
    assert "di2siem check jumpcloud token: FAILED - not reached within the 3 s deadline" in out
    assert "di2siem check siem: FAILED - not reached within the 3 s deadline" in out
    assert out.splitlines()[-2].endswith(
        "timeout_seconds): the JumpCloud token endpoint in 3 s; the SIEM in 3 s"
    ), out
