"""Hostile peers in place of each SIEM intake (splunk_hec, elasticsearch, sentinel, otlp over
HTTP; syslog below TLS): a 200 whose body lies, redirects, answers trickled past
``siem.timeout_seconds``, huge or malformed bodies, and answers that echo our secrets. The
collector runs in-process against the JumpCloud simulator and a peer of our own
(tests/support/hostile.py); each test asserts the exit code, that nothing was recorded as
shipped, the wall time, and that no secret reached the output."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    FAST,
    assert_no_secrets,
    assert_nothing_recorded,
    legacy_config,
    recent_events,
)
from di2siem.cli import main
from di2siem.intakes.delivery import MAX_RESENDS
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.sentinel import SentinelSimulator
from di2siem_sandbox.tlsfiles import TlsFiles, make_tls_files
from hostile import Exchange, HostilePeer, RawPeer, timed
from intake_rigs import AZ_SECRET, BATCH, HTTP_INTAKES, assert_no_intake_secrets, siem_section

LEAK_MARK = "should-never-be-echoed"


class Rig:
    """A config for one intake against a peer, and an in-process runner."""

    def __init__(self, tmp: Path, jc: JumpCloudSimulator, az: SentinelSimulator) -> None:
        self.jc, self.az = jc, az
        self.path = tmp / "config.json"
        self.state_dir = tmp / "state"

    def write(self, intake: str, url: str, authority: str | None = None, **top: Any) -> None:
        cfg = legacy_config(self.jc.url, url)
        cfg["siem"] = siem_section(intake, url, authority or self.az.url)
        cfg["siem"].update(top.pop("siem", {}))
        cfg = {**cfg, **FAST, "state_dir": str(self.state_dir), **top}
        self.path.write_text(json.dumps(cfg))
        self.path.chmod(0o600)

    def run(self, capsys) -> tuple[int, str]:
        capsys.readouterr()
        rc = main(["run", "--config", str(self.path)])
        output = "".join(capsys.readouterr())
        assert_no_secrets(output)
        assert_no_intake_secrets(output, *self.az.tokens)
        assert LEAK_MARK not in output and "Traceback" not in output
        return rc, output


@pytest.fixture
def az() -> Iterator[SentinelSimulator]:
    with SentinelSimulator(client_secret=AZ_SECRET) as sim:
        yield sim


@pytest.fixture
def rig(tmp_path: Path, jcsim: JumpCloudSimulator, az: SentinelSimulator) -> Rig:
    jcsim.add_events(recent_events(BATCH))
    return Rig(tmp_path, jcsim, az)


def accept_anything(ex: Exchange) -> None:
    ex.reply(200, {})


# -- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("intake", HTTP_INTAKES)
def test_a_redirect_is_a_refusal_never_followed(rig: Rig, capsys, intake: str, status: int):
    with HostilePeer(accept_anything) as target:

        def redirect(ex: Exchange) -> None:
            where = f"http://u:{LEAK_MARK}@127.0.0.1:{target.port}{ex.request.path}?t={LEAK_MARK}"
            ex.reply(status, b"", {"Location": where})

        with HostilePeer(redirect) as peer:
            rig.write(intake, peer.url)
            rc, output = rig.run(capsys)
            assert rc == 1, output
            assert f"answered {status}" in output and "never follows redirects" in output
            assert len(peer.requests()) == 1, "a redirect is a refusal, not retried"
        assert target.requests() == [], "a redirect was followed"
    assert_nothing_recorded(rig.state_dir)


def test_a_redirecting_sentinel_authority_keeps_the_client_secret(rig: Rig, capsys) -> None:
    with HostilePeer(accept_anything) as target:

        def redirect(ex: Exchange) -> None:
            ex.reply(307, b"", {"Location": f"{target.url}{ex.request.path}"})

        with HostilePeer(redirect) as authority:
            rig.write("sentinel", rig.az.url, authority=authority.url)
            rc, output = rig.run(capsys)
            assert rc == 1 and "siem.authority" in output, output
        assert target.requests() == [] and rig.az.rows == []
    assert_nothing_recorded(rig.state_dir)


# -- a 200 whose body lies -------------------------------------------------------------------

LIES = [
    ("splunk_hec", {"text": "Success", "code": 0}, "without an ackId"),
    ("splunk_hec", b"\xff\x00 not json", "without an ackId"),
    ("splunk_hec", {"text": "Server is busy", "code": 9, "ackId": 0}, "SIEM answered 200 with"),
    ("elasticsearch", {"took": 1, "errors": False, "items": []}, f"0 item(s) for {BATCH} sent"),
    ("elasticsearch", b"<html>ok</html>", "without the _bulk items"),
    ("otlp", {"partialSuccess": {"rejectedLogRecords": str(BATCH), "errorMessage": "dropped"}},
     f"rejected {BATCH} log record(s) of a batch: dropped"),
    # a portal or another service at the endpoint: only 204 is the Logs Ingestion API's yes
    ("sentinel", b"<html>Sign in</html>", "where the Logs Ingestion API answers 204"),
    ("sentinel", {}, "not counted as delivered"),
]  # fmt: skip


@pytest.mark.parametrize(("intake", "body", "said"), LIES)
def test_a_200_that_lies_is_not_taken_as_delivered(
    rig: Rig, capsys, intake: str, body: Any, said: str
) -> None:
    with HostilePeer(lambda ex: ex.reply(200, body)) as peer:
        rig.write(intake, peer.url)
        rc, output = rig.run(capsys)
        assert rc == 1, output
        assert said in output, output
        assert len(peer.requests()) == 1, "a lying answer is refused, not retried"
    if intake != "otlp":  # OTLP forbids resending a partial success: that batch counts as sent
        assert_nothing_recorded(rig.state_dir)


@pytest.mark.parametrize(
    "answer",
    [{"token_type": "Bearer", "expires_in": 3599}, b"\x00 not json", {"access_token": "x y"}],
)
def test_a_sentinel_token_answer_that_lies_ships_nothing(rig: Rig, capsys, answer: Any) -> None:
    with HostilePeer(lambda ex: ex.reply(200, answer)) as authority:
        rig.write("sentinel", rig.az.url, authority=authority.url)
        rc, output = rig.run(capsys)
        assert rc == 1, output
        assert "access_token" in output or "malformed answer" in output, output
    assert rig.az.rows == [] and rig.az.posts == []
    assert_nothing_recorded(rig.state_dir)


# -- an answer trickled past siem.timeout_seconds -------------------------------------------


def trickle(ex: Exchange) -> None:
    ex.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n")
    ex.trickle(b"{" + b" " * 199, every_s=0.2)


@pytest.mark.parametrize("intake", HTTP_INTAKES)
def test_an_answer_trickled_past_the_timeout_fails_within_its_bound(
    rig: Rig, capsys, intake: str
) -> None:
    with HostilePeer(trickle) as peer:
        rig.write(intake, peer.url, max_retries=0, siem={"timeout_seconds": 0.5})
        (rc, output), took = timed(lambda: rig.run(capsys))
        assert rc == 1, output
        assert "did not finish answering within 0.5s" in output, output
        attempts = len(peer.requests())
        assert 1 <= attempts <= MAX_RESENDS + 1
        assert took < attempts * 0.5 + 3, took  # each cut at its timeout, not at the trickle's end
    assert_nothing_recorded(rig.state_dir)


# -- huge and malformed bodies ---------------------------------------------------------------

HUGE = 8 * 1024 * 1024


@pytest.mark.parametrize("status", [400, 200])
@pytest.mark.parametrize("intake", ("splunk_hec", "elasticsearch"))
def test_a_huge_body_is_cut_and_the_error_stays_one_short_line(
    rig: Rig, capsys, intake: str, status: int
) -> None:
    """8 MiB of garbage as the answer (an error, or a 2xx that the intake must read): read only
    up to our cap, and the run's error line stays short."""
    with HostilePeer(lambda ex: ex.reply(status, b'{"text":"' + b"x" * HUGE)) as peer:
        rig.write(intake, peer.url)
        (rc, output), took = timed(lambda: rig.run(capsys))
        assert rc == 1, output
        assert took < 10 and max(len(line) for line in output.splitlines()) < 2000
        assert len(peer.requests()) == 1
    assert_nothing_recorded(rig.state_dir)


@pytest.mark.parametrize("intake", ("sentinel", "otlp"))
def test_a_huge_error_body_is_cut_for_the_intakes_that_take_any_2xx(
    rig: Rig, capsys, intake: str
) -> None:
    """Sentinel (204) and OTLP (200) read no 2xx body beyond a partial success, so the huge
    body that matters is an error's."""
    with HostilePeer(lambda ex: ex.reply(400, b"\x00\xff" + b"x" * HUGE)) as peer:
        rig.write(intake, peer.url)
        (rc, output), took = timed(lambda: rig.run(capsys))
        assert rc == 1 and "SIEM answered 400" in output, output
        assert took < 10 and max(len(line) for line in output.splitlines()) < 2000
    assert_nothing_recorded(rig.state_dir)


# -- secrets echoed by the peer --------------------------------------------------------------


def echo(status: int) -> Any:
    """An error answer that repeats the request's credentials and body, in its body and in a
    header."""

    def behave(ex: Exchange) -> None:
        authorization = ex.request.headers.get("authorization", "")
        said = f"{authorization} {ex.request.body[:300].decode('utf-8', 'replace')}"
        body = {"text": said, "message": said, "error": said, "code": 4}
        ex.reply(status, body, {"WWW-Authenticate": authorization})

    return behave


@pytest.mark.parametrize("status", [401, 403, 400])
@pytest.mark.parametrize("intake", HTTP_INTAKES)
def test_secrets_echoed_by_the_intake_never_reach_our_output(
    rig: Rig, capsys, intake: str, status: int
) -> None:
    with HostilePeer(echo(status)) as peer:
        rig.write(intake, peer.url)
        rc, output = rig.run(capsys)  # asserts every intake secret and token absent
        assert rc == 1, output
        assert f"{status}" in output and "[redacted]" in output, output
    assert_nothing_recorded(rig.state_dir)


def test_a_token_endpoint_echoing_the_client_secret_is_redacted(rig: Rig, capsys) -> None:
    with HostilePeer(echo(401)) as authority:
        rig.write("sentinel", rig.az.url, authority=authority.url)
        rc, output = rig.run(capsys)
        assert rc == 1 and "[redacted]" in output, output
        assert AZ_SECRET in authority.requests()[0].body.decode().replace("%7E", "~")
    assert rig.az.posts == []


# -- syslog: peers below TLS -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls-hostile"))


def hold(sock: socket.socket, peer: RawPeer) -> None:
    """Accept the TCP connection, then never say a word (no TLS handshake)."""
    while not peer.stopping.wait(0.05):
        pass


def not_tls(sock: socket.socket, peer: RawPeer) -> None:
    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\xff" * 64)


@pytest.mark.parametrize(
    ("behave", "said"),
    [(hold, "0.5s"), (not_tls, "TLS")],
)
def test_a_hostile_syslog_receiver_fails_the_run_within_its_bound(
    rig: Rig, capsys, tls: TlsFiles, behave, said: str
) -> None:
    with RawPeer(behave) as peer:
        rig.write("otlp", "http://127.0.0.1:9", max_retries=0)
        siem = {"format": "syslog", "url": f"tls://127.0.0.1:{peer.port}",
                "ca_bundle": tls.ca, "timeout_seconds": 0.5, "batch_size": BATCH}  # fmt: skip
        cfg = json.loads(rig.path.read_text())
        cfg["siem"] = siem
        rig.path.write_text(json.dumps(cfg))
        (rc, output), took = timed(lambda: rig.run(capsys))
        assert rc == 1, output
        assert said in output, output
        assert took < (MAX_RESENDS + 1) * 0.5 + 3, took
        assert peer.connections >= 1
    assert_nothing_recorded(rig.state_dir)
