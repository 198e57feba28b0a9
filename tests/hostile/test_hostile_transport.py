"""Hostile peers on the transport: redirects, stalls, compression bombs, proxies, CA bundles.

Each test runs the collector over real HTTP against a peer of our own (tests/support/hostile.py)
that misbehaves on purpose, and asserts the exact promise: what was delivered, what the state
says, the exit code, the wall time, the peak memory, and that no credential went anywhere
it should not.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import SA_CLIENT_ID, SA_SECRET, Env, counts, recent_events, summary
from di2siem.transport.body import MAX_PAGE_BYTES
from di2siem.transport.exchange import BUDGET_GRACE_S
from hostile import Exchange, HostilePeer, RawPeer, timed

EVENTS_PATH = "/insights/directory/v1/events"
REDIRECTS = (301, 302, 303, 307, 308)
CREDENTIAL_HEADERS = ("x-api-key", "authorization", "private_key")


def ok_target(ex: Exchange) -> None:
    """A second origin that would happily accept anything (it must never be asked)."""
    ex.reply(200, "[]")


def redirect_to(target: HostilePeer, status: int) -> HostilePeer:
    def behave(ex: Exchange) -> None:
        where = (
            f"http://user:should-never-be-echoed@127.0.0.1:{target.port}{ex.request.path}"
            "?token=should-never-be-echoed"
        )
        ex.reply(status, b"", {"Location": where})

    return HostilePeer(behave)


def no_progress(env: Env) -> None:
    """Nothing counted as shipped: no cursor in the state (or no state at all)."""
    if env.state_file.exists():
        for org in env.state()["orgs"].values():
            assert org.get("cursor") is None


def events_once(env: Env, ids: list[str]) -> None:
    shipped = env.shipped_ids()
    assert sorted(shipped) == sorted(ids), "every event exactly once"


# -- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", REDIRECTS)
def test_jumpcloud_redirect_is_a_failure_and_the_key_stays_home(
    env: Env, capsys, status: int
) -> None:
    events = recent_events(30)
    env.jc.add_events(events)
    with HostilePeer(ok_target) as target, redirect_to(target, status) as jc:
        cfg = json.loads(env.write().read_text())
        cfg["jumpcloud"]["base_url"] = jc.url
        env.write(cfg)
        rc, _, err = env.run(capsys)
        assert rc == 1
        assert f"JumpCloud answered {status} redirecting to {target.url}{EVENTS_PATH}" in err
        assert "jumpcloud.base_url" in err
        assert "should-never-be-echoed" not in err
        assert target.requests() == [], "a redirect target got a request"
        assert len(jc.requests()) == 1, "a redirect is not retried"
    assert env.shipped() == []
    no_progress(env)
    env.write()  # the fixed URL: everything arrives, once
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    events_once(env, [e["id"] for e in events])


@pytest.mark.parametrize("status", REDIRECTS)
def test_siem_redirect_is_a_failure_not_a_delivery(env: Env, capsys, status: int) -> None:
    events = recent_events(30)
    env.jc.add_events(events)
    with HostilePeer(ok_target) as target, redirect_to(target, status) as siem:
        cfg = json.loads(env.write().read_text())
        cfg["siem"]["url"] = siem.url + "/logs/datastream"
        env.write(cfg)
        rc, _, err = env.run(capsys)
        assert rc == 1
        assert f"SIEM answered {status} redirecting to {target.url}/logs/datastream" in err
        assert "siem.url" in err
        assert "should-never-be-echoed" not in err
        assert target.requests() == [], "the batch (and its headers) went to another origin"
        assert len(siem.requests()) == 1
        assert summary(err)["shipped"] == "0"
    no_progress(env)
    env.write()
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    events_once(env, [e["id"] for e in events])


@pytest.mark.parametrize("status", (302, 307))
def test_token_endpoint_redirect_keeps_the_client_secret_home(
    env: Env, capsys, status: int
) -> None:
    with HostilePeer(ok_target) as target, redirect_to(target, status) as token:
        cfg = json.loads(env.write().read_text())
        jc = cfg["jumpcloud"]
        del jc["api_key"]
        jc.update(
            client_id=SA_CLIENT_ID,
            client_secret=SA_SECRET,
            token_url=token.url + "/oauth2/token",
            org_ids=["aaaaaaaaaaaaaaaaaaaaaaaa"],
        )
        env.write(cfg)
        rc, out, _ = env.run(capsys, command="check")
        assert rc == 1
        assert f"answered {status} redirecting to {target.url}/oauth2/token" in out
        assert "jumpcloud.token_url" in out
        assert "should-never-be-echoed" not in out
        assert target.requests() == []
        rc, _, _ = env.run(capsys)
        assert rc == 1
        assert target.requests() == []


def test_check_reports_a_redirecting_siem(env: Env, capsys) -> None:
    with HostilePeer(ok_target) as target, redirect_to(target, 308) as siem:
        cfg = json.loads(env.write().read_text())
        cfg["siem"]["url"] = siem.url + "/logs/datastream"
        env.write(cfg)
        rc, out, _ = env.run(capsys, command="check")
        assert rc == 1
        assert "di2siem check siem: FAILED - SIEM answered 308 redirecting to" in out
        assert "should-never-be-echoed" not in out
        assert target.requests() == []


# -- stalls: one byte a second ---------------------------------------------------------------

BUDGET_S = 1.0
# budget + the grace an in-flight exchange gets + start-up and teardown
WALL_LIMIT_S = BUDGET_S + BUDGET_GRACE_S + 3.0


def trickle_page(ex: Exchange) -> None:
    page = json.dumps(recent_events(5)).encode()
    ex.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(page)}\r\n\r\n".encode()
    )
    ex.trickle(page)


def trickle_headers(ex: Exchange) -> None:
    ex.trickle(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " * 100)


def trickle_answer(ex: Exchange) -> None:
    ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    ex.trickle(b"x" * 100)


@pytest.mark.parametrize("behave", (trickle_page, trickle_headers), ids=("body", "headers"))
def test_jumpcloud_trickle_cannot_outlive_the_budget(env: Env, behave) -> None:
    events = recent_events(20)
    env.jc.add_events(events)
    with HostilePeer(behave) as jc:
        cfg = json.loads(env.write().read_text())
        cfg["jumpcloud"]["base_url"] = jc.url
        env.write(cfg, run_time_budget_seconds=BUDGET_S)
        (rc, _, err), took = timed(lambda: env.proc(timeout=60))
    assert rc == 1, err
    assert took < WALL_LIMIT_S, f"the run took {took:.1f}s"
    assert "did not finish answering within run_time_budget_seconds" in err
    assert "nothing shipped this run" in err
    assert summary(err)["status"] == "failed"
    no_progress(env)
    env.write()
    rc, _, err = env.proc()
    assert rc == 0, err
    events_once(env, [e["id"] for e in events])


def test_siem_trickle_cannot_outlive_the_budget(env: Env) -> None:
    events = recent_events(20)
    env.jc.add_events(events)
    with HostilePeer(trickle_answer) as siem:
        cfg = json.loads(env.write().read_text())
        cfg["siem"]["url"] = siem.url + "/logs/datastream"
        env.write(cfg, run_time_budget_seconds=BUDGET_S)
        (rc, _, err), took = timed(lambda: env.proc(timeout=60))
        assert len(siem.requests()) == 1  # the batch in flight
    assert rc == 1, err
    assert took < WALL_LIMIT_S, f"the run took {took:.1f}s"
    assert "SIEM did not finish answering within run_time_budget_seconds" in err
    assert summary(err)["shipped"] == "0"
    no_progress(env)
    env.write()
    rc, _, err = env.proc()
    assert rc == 0, err
    events_once(env, [e["id"] for e in events])


def trickle_tls_handshake(sock, peer: RawPeer) -> None:
    """A TLS record header announcing 16 KB of handshake, then one byte a second."""
    for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 16384:
        if peer.stopping.wait(1.0):
            return
        sock.sendall(bytes([byte]))


def test_tls_handshake_trickle_cannot_outlive_the_budget(env: Env) -> None:
    events = recent_events(10)
    env.jc.add_events(events)
    with RawPeer(trickle_tls_handshake) as siem:
        env.write(run_time_budget_seconds=BUDGET_S)
        env.edit(lambda c: c["siem"].update(url=f"https://127.0.0.1:{siem.port}/logs/datastream"))
        (rc, _, err), took = timed(lambda: env.proc(timeout=60))
        assert siem.connections == 1
    assert rc == 1, err
    assert took < WALL_LIMIT_S, f"the run took {took:.1f}s"
    assert "SIEM did not finish answering within run_time_budget_seconds" in err
    no_progress(env)


def test_timeout_seconds_bounds_the_whole_exchange(env: Env, capsys) -> None:
    """A 1 byte/s answer never trips a per-read timeout; timeout_seconds is the whole answer."""
    env.jc.add_events(recent_events(5))
    with HostilePeer(trickle_page) as jc:
        cfg = json.loads(env.write().read_text())
        cfg["jumpcloud"]["base_url"] = jc.url
        cfg["jumpcloud"]["timeout_seconds"] = 0.5
        env.write(cfg, max_retries=1)
        (rc, _, err), took = timed(lambda: env.run(capsys))
        assert len(jc.requests()) == 2
    assert rc == 1
    assert took < 4.0
    assert "JumpCloud did not finish answering within 0.5s" in err
    assert "jumpcloud.timeout_seconds" in err


# -- compression bombs -----------------------------------------------------------------------

BOMB_INFLATED = 1024**3


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """About 1 MB of valid gzip that inflates to 1 GiB (a JSON array start, then spaces).

    Built without compressing a gigabyte: after a full flush the deflate stream of the same
    4 MiB block is the same bytes, so it is repeated; CRC and size make a valid trailer."""
    block = b" " * (4 * 1024 * 1024)
    count = BOMB_INFLATED // len(block)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = squeeze.compress(b"[") + squeeze.flush(zlib.Z_FULL_FLUSH)
    repeated = squeeze.compress(block) + squeeze.flush(zlib.Z_FULL_FLUSH)
    end = squeeze.flush()
    crc = zlib.crc32(b"[")
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    size = (1 + count * len(block)) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + head + repeated * count + end + struct.pack("<II", crc, size)


def test_gzip_bomb_page_fails_fast_with_bounded_memory(env: Env, gzip_bomb: bytes) -> None:
    assert len(gzip_bomb) < 2 * 1024 * 1024

    def behave(ex: Exchange) -> None:
        ex.reply(200, gzip_bomb, {"Content-Encoding": "gzip"})

    with HostilePeer(behave) as jc:
        cfg = json.loads(env.write().read_text())
        cfg["jumpcloud"]["base_url"] = jc.url
        env.write(cfg, max_retries=1)
        (rc, _, err), took = timed(lambda: env.proc(timeout=120))
    assert rc == 1, err
    assert f"larger than {MAX_PAGE_BYTES // 1024**2} MiB once decoded" in err
    peak = float(summary(err)["peak_rss_mb"])
    # the bomb inflates to 1024 MiB; a page is capped at 256 MiB
    assert peak < MAX_PAGE_BYTES / 1024**2 + 200, f"peak RSS {peak} MB"
    assert took < 30


def test_error_body_bomb_is_only_read_to_its_start(env: Env, capsys, gzip_bomb: bytes) -> None:
    """An error answer is never a page: its body is read to 64 KiB, the status decides."""

    def behave(ex: Exchange) -> None:
        ex.reply(401, gzip_bomb, {"Content-Encoding": "gzip"})

    with HostilePeer(behave) as jc:
        env.write()
        env.edit(lambda c: c["jumpcloud"].update(base_url=jc.url))
        (rc, _, err), took = timed(lambda: env.run(capsys))
        assert len(jc.requests()) == 1
    assert rc == 1
    assert "JumpCloud answered 401: check jumpcloud.api_key" in err
    assert took < 5


def test_gzip_pages_still_work(env: Env, capsys) -> None:
    """The cap is on the decoded size: normal compressed pages (also in two gzip members)."""
    events = recent_events(40)
    text = json.dumps(events).encode()
    body = gzip.compress(text[:100]) + gzip.compress(text[100:])

    def behave(ex: Exchange) -> None:
        ex.reply(200, body, {"Content-Encoding": "gzip"})

    with HostilePeer(behave) as jc:
        cfg = json.loads(env.write().read_text())
        cfg["jumpcloud"]["base_url"] = jc.url
        env.write(cfg)
        rc, _, err = env.run(capsys)
    assert rc == 0, err
    events_once(env, [e["id"] for e in events])


# -- proxies and loopback --------------------------------------------------------------------


def proxy_env(proxy: HostilePeer, **extra: str) -> dict[str, str]:
    environ = dict(os.environ)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        environ[name] = proxy.url
    for name in ("NO_PROXY", "no_proxy"):
        environ.pop(name, None)
    environ.update(extra)
    return environ


def run_cli(env: Env, environ: dict[str, str], command: str = "run") -> tuple[int, str, str]:
    from conftest import assert_no_secrets, di2siem_executable

    result = subprocess.run(
        [di2siem_executable(), command, "--config", str(env.path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    assert_no_secrets(result.stdout, result.stderr)
    return result.returncode, result.stdout, result.stderr


def test_loopback_never_goes_through_a_proxy(env: Env) -> None:
    events = recent_events(25)
    env.jc.add_events(events)
    env.write()
    with HostilePeer(lambda ex: ex.reply(502, "proxy")) as proxy:
        rc, out, err = run_cli(env, proxy_env(proxy), "check")
        assert rc == 0, out + err
        rc, _, err = run_cli(env, proxy_env(proxy))
        assert rc == 0, err
        assert proxy.requests() == [], "a loopback request (with its key) went to the proxy"
    events_once(env, [e["id"] for e in events])


def test_other_hosts_still_use_the_environment_proxy(env: Env) -> None:
    """The environment may still choose the proxy for real hosts (documented)."""
    env.write()
    env.edit(lambda c: c["jumpcloud"].update(base_url="https://api.jumpcloud.example"))
    with HostilePeer(lambda ex: ex.reply(502, "no")) as proxy:
        rc, _, _ = run_cli(env, proxy_env(proxy), "check")
        assert rc == 1
        seen = proxy.requests()
        assert seen and seen[0].method == "CONNECT"
        assert seen[0].path == "api.jumpcloud.example:443"
        assert all(k not in seen[0].headers for k in CREDENTIAL_HEADERS)


@pytest.mark.parametrize("host", ("x.localhost", "127.0.0.1.nip.io", "localhost.example"))
def test_only_literal_loopback_may_use_plain_http(env: Env, capsys, host: str) -> None:
    env.write()
    env.edit(lambda c: c["jumpcloud"].update(base_url=f"http://{host}:8400"))
    rc, _, err = env.run(capsys, "--offline", command="check")
    assert rc == 2
    assert err.count("\n") == 1
    problem = f"plain http:// is only allowed for loopback hosts (got host {host})"
    assert f"jumpcloud.base_url: {problem}" in err


# -- CA bundles from the environment ---------------------------------------------------------


def make_cert(tmp: Path, name: str) -> tuple[str, str]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_configured_ca_bundle_wins_over_the_environment(env: Env, tmp_path: Path) -> None:
    server_cert = make_cert(tmp_path, "siem")
    other_cert, _ = make_cert(tmp_path, "other")
    events = recent_events(10)
    env.jc.add_events(events)
    received: list[bytes] = []

    def accept(ex: Exchange) -> None:
        received.append(ex.request.body)
        ex.reply(200, "{}")

    with HostilePeer(accept, tls=server_cert) as siem:
        env.write()
        env.edit(
            lambda c: c["siem"].update(url=siem.url + "/logs/datastream", ca_bundle=server_cert[0])
        )
        plain = dict(os.environ)
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            plain.pop(name, None)
        hostile_envs = (
            {**plain, "REQUESTS_CA_BUNDLE": other_cert},
            {**plain, "CURL_CA_BUNDLE": str(tmp_path / "missing.pem")},
        )
        rc, verdict, _ = run_cli(env, plain, "check")
        assert rc == 0, verdict
        for environ in hostile_envs:
            assert run_cli(env, environ, "check")[:2] == (0, verdict)
        rc, _, err = run_cli(env, hostile_envs[0])
        assert rc == 0, err
    shipped = [json.loads(line)["id"] for body in received for line in body.splitlines()]
    assert sorted(shipped) == sorted(e["id"] for e in events)


def test_environment_ca_bundle_does_not_rescue_an_unconfigured_one(
    env: Env, tmp_path: Path
) -> None:
    """Without siem.ca_bundle, a private CA in REQUESTS_CA_BUNDLE is not trusted either: the
    cron job and a login shell give the same verdict."""
    server_cert = make_cert(tmp_path, "siem")
    with HostilePeer(lambda ex: ex.reply(200, "{}"), tls=server_cert) as siem:
        env.write()
        env.edit(lambda c: c["siem"].update(url=siem.url + "/logs/datastream"))
        environ = {
            **os.environ,
            "REQUESTS_CA_BUNDLE": server_cert[0],
            "CURL_CA_BUNDLE": server_cert[0],
            "SSL_CERT_FILE": server_cert[0],
            "SSL_CERT_DIR": str(tmp_path),
        }
        rc, out, _ = run_cli(env, environ, "check")
        assert rc == 1
        assert (
            f"SIEM 127.0.0.1:{siem.port}: TLS certificate verify failed: self-signed "
            "certificate: check siem.url or set siem.ca_bundle"
        ) in out


# -- a JumpCloud 200 that is not a page ------------------------------------------------------


def test_jumpcloud_200_with_an_error_object_is_malformed(env: Env, capsys) -> None:
    def behave(ex: Exchange) -> None:
        ex.reply(200, {"message": "internal error", "error": "boom"})

    with HostilePeer(behave) as jc:
        env.write()
        env.edit(lambda c: c["jumpcloud"].update(base_url=jc.url))
        rc, _, err = env.run(capsys)
        assert len(jc.requests()) == 4  # retried: max_retries 3
    assert rc == 1
    assert "JumpCloud sent a malformed answer (not a JSON array)" in err
    no_progress(env)
    assert counts(err)["shipped"] == 0
