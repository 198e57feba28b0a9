"""The syslog intake against a real receiver no one here wrote: Debian's rsyslogd (imtcp with
the GnuTLS stream driver of rsyslog-gnutls), started for each test in the foreground with its
own config, pid file, work directory and port on 127.0.0.1 (never the system's rsyslog, its
/dev/log or its log files). rsyslog parses every message with its own RFC 5424 parser and
writes what it read, the raw message and its parsed fields, as one JSON line to a file.

Octet counting over TLS (RFC 5425) with rsyslog's anonymous and its x509/name client
authentication, and LF framing over plain TCP (RFC 6587). rsyslog comes from the Makefile's
APT_DEPS; without it the tests skip loudly (fail in CI: DI2SIEM_REQUIRE_INTEROP=1).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, assert_no_secrets, counts, legacy_config, recent_events
from di2siem.cli import main
from di2siem.intakes.severity import auto_severity
from di2siem.timeutil import parse_ms
from di2siem_sandbox.syslog import SyslogReceiver
from di2siem_sandbox.tlsfiles import TlsFiles, make_tls_files
from interop_support import unavailable

CUSTOM = {"reqHost": "jumpcloud", "customField": "jumpcloud", "severity": "info"}
HOSTNAME = "di2siem-interop"
CLIENT_NAME = "di2siem test client"  # the client certificate's CN (tlsfiles.py)
# rsyslog's own reading of each message, one JSON object a line (jsonf: "name":"value")
FIELDS = (
    ("raw", "rawmsg"),
    ("facility", "syslogfacility"),
    ("severity", "syslogseverity"),
    ("hostname", "hostname"),
    ("app_name", "app-name"),
    ("procid", "procid"),
    ("msgid", "msgid"),
    ("sd", "structured-data"),
    ("msg", "msg"),
)
SEVERITY = {6: 2, 5: 3, 4: 4, 3: 6, 2: 7, 1: 7}  # the event's own 1..6 -> syslog severity


def _rsyslogd(capsys: pytest.CaptureFixture | None = None) -> str:
    found = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
    if found is None:
        unavailable("rsyslogd", "not installed; make apt-deps as root installs rsyslog", capsys)
    return str(found)


def _require_gtls(capsys: pytest.CaptureFixture) -> None:
    if not glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so") + glob.glob("/usr/lib/rsyslog/lmnsd_*"):
        unavailable("rsyslog-gnutls", "lmnsd_gtls.so not found; make apt-deps installs it", capsys)


def _listening(port: int) -> bool:
    """A socket listens on 127.0.0.1:PORT (read from /proc: a probe connection would be a
    session rsyslogd logs as broken)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: TCP_LISTEN
            return True
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _template() -> str:
    """rsyslog's template writing FIELDS and the message's time as one JSON object a line."""
    properties = [f'property(outname="{out}" name="{name}" format="jsonf")' for out, name in FIELDS]
    properties.append(
        'property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")'
    )
    items = '\n  constant(value=",")\n  '.join(properties)
    return (
        'template(name="fields" type="list") {\n  constant(value="{")\n  '
        + items
        + '\n  constant(value="}\\n")\n}'
    )


def rsyslog_config(folder: Path, port: int, tls: TlsFiles | None, auth: str) -> str:
    tls_global = ""
    driver = ""
    if tls is not None:
        tls_global = (
            f' defaultNetstreamDriverCAFile="{tls.ca}"'
            f' defaultNetstreamDriverCertFile="{tls.server_cert}"'
            f' defaultNetstreamDriverKeyFile="{tls.server_key}"'
        )
        driver = f' streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth}"'
        if auth == "x509/name":
            driver += f' permittedPeer=["{CLIENT_NAME}"]'
    return f"""
global(workDirectory="{folder}/work" maxMessageSize="64k"{tls_global})
module(load="imtcp"{driver})
{_template()}
ruleset(name="received") {{
  action(type="omfile" file="{folder}/received.jsonl" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="received")
*.* action(type="omfile" file="{folder}/rsyslogd-internal.log")
"""


class Rsyslogd:
    """rsyslogd -n with a config of its own in FOLDER, listening on 127.0.0.1:port."""

    def __init__(self, folder: Path, tls: TlsFiles | None, auth: str = "anon") -> None:
        self.folder, self.tls = folder, tls
        self.port = _free_port()
        (folder / "work").mkdir(parents=True, exist_ok=True)
        self.config = folder / "rsyslog.conf"
        self.config.write_text(rsyslog_config(folder, self.port, tls, auth))
        self.output = folder / "received.jsonl"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = _rsyslogd()
        check = subprocess.run(
            [binary, "-N1", "-f", str(self.config)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, f"rsyslogd refused its config:\n{check.stderr}"
        log = open(self.folder / "rsyslogd.out", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [binary, "-n", "-f", str(self.config), "-i", str(self.folder / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._log = log
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"rsyslogd exited: {self.diagnostics()}"
            if _listening(self.port):
                return
            time.sleep(0.02)
        raise AssertionError(f"rsyslogd never listened on {self.port}: {self.diagnostics()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self._log.close()

    def diagnostics(self) -> str:
        texts = []
        for name in ("rsyslogd.out", "rsyslogd-internal.log"):
            path = self.folder / name
            if path.exists():
                texts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)

    def received(self, expected: int, wait_s: float = 15) -> list[dict[str, str]]:
        """rsyslog's lines once EXPECTED are written (it writes asynchronously), or what is
        there after WAIT_S."""
        deadline = time.monotonic() + wait_s
        while True:
            text = self.output.read_text(encoding="utf-8") if self.output.exists() else ""
            lines = text.splitlines()
            if len(lines) >= expected or time.monotonic() >= deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.05)

    def complaints(self) -> list[str]:
        """What rsyslogd said about the sessions (a TLS connection closed without
        close_notify, a frame it could not read, ...)."""
        said = (self.folder / "rsyslogd.out").read_text(errors="replace").splitlines()
        return [line for line in said if line.strip()]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def rsyslogd_factory(tmp_path: Path, capsys) -> Iterator[Any]:
    _rsyslogd(capsys)
    started: list[Rsyslogd] = []

    def start(tls: TlsFiles | None, auth: str = "anon") -> Rsyslogd:
        if tls is not None:
            _require_gtls(capsys)
        daemon = Rsyslogd(tmp_path / f"rsyslog{len(started)}", tls, auth)
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def expected_text(event: dict) -> str:
    shaped = {k: v for k, v in event.items() if k != "timestamp"}
    shaped["jc_timestamp"] = event["timestamp"]
    shaped.update(CUSTOM)
    return json.dumps(shaped, separators=(",", ":"), ensure_ascii=False)


def ship(tmp: Path, jcsim, url: str, capsys, **siem: Any) -> str:
    cfg = legacy_config(jcsim.url, "http://127.0.0.1:9")
    cfg["siem"] = {
        "format": "syslog",
        "url": url,
        "hostname": HOSTNAME,
        "facility": "auth",
        "batch_size": 100,
        "batch_delay_milliseconds": 0,
        "custom_log_fields": CUSTOM,
        **siem,
    }
    path = tmp / "config.json"
    path.write_text(json.dumps({**cfg, **FAST, "state_dir": str(tmp / "state")}))
    os.chmod(path, 0o600)
    capsys.readouterr()
    rc = main(["run", "--config", str(path)])
    out, err = capsys.readouterr()
    assert_no_secrets(out, err)
    assert rc == 0, out + err
    return err


def assert_rsyslog_read_every_event_once(lines: list[dict[str, str]], events: list[dict]) -> None:
    assert len(lines) == len(events), f"rsyslog wrote {len(lines)} lines for {len(events)} events"
    ids = Counter(json.loads(line["msg"])["id"] for line in lines)
    assert ids == Counter(e["id"] for e in events)  # every event exactly once
    for event, line in zip(events, lines):
        text = expected_text(event)
        assert line["msg"] == text
        assert line["facility"] == "4"  # auth
        assert line["severity"] == str(SEVERITY[auto_severity(event, 3)])
        assert line["hostname"] == HOSTNAME and line["app_name"] == "jumpcloud"
        assert line["procid"] == "-" and line["sd"] == "-"
        assert line["msgid"] == "".join(c for c in event["event_type"] if " " < c < "\x7f")[:32]
        pri = 4 * 8 + int(line["severity"])
        assert line["raw"].startswith(f"<{pri}>1 ") and line["raw"].endswith(" - " + text)
        when = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
        assert int(when.timestamp() * 1000) == parse_ms(event["timestamp"])


@pytest.mark.parametrize(
    ("framing", "secure", "auth"),
    [
        ("octet_counting", True, "anon"),
        ("octet_counting", True, "x509/name"),
        ("lf", False, ""),
    ],
)
def test_rsyslog_reads_every_event_once_with_its_fields(
    tmp_path: Path, jcsim, tls: TlsFiles, rsyslogd_factory, capsys, framing, secure, auth
) -> None:
    events = recent_events(250)
    events[3]["success"] = False  # the event's severity: warning
    events[4]["event_type"] = "ünïcode event type that is much longer than thirty-two"
    jcsim.add_events(events)
    daemon = rsyslogd_factory(tls if secure else None, auth or "anon")
    siem: dict[str, Any] = {"framing": framing}
    if secure:
        siem["ca_bundle"] = tls.ca
    if auth == "x509/name":
        siem.update(client_cert=tls.client_cert, client_key=tls.client_key)
    err = ship(tmp_path, jcsim, daemon.url, capsys, **siem)
    assert counts(err)["shipped"] == 250
    lines = daemon.received(250)
    assert_rsyslog_read_every_event_once(lines, events)
    err = ship(tmp_path, jcsim, daemon.url, capsys, **siem)
    assert counts(err)["shipped"] == 0
    time.sleep(0.2)
    assert len(daemon.received(250, wait_s=0)) == 250  # nothing twice
    assert daemon.complaints() == []


def _send_one(port: int, tls: TlsFiles, close_notify: bool) -> None:
    """One valid RFC 5425 frame over TLS, then a close with or without close_notify."""
    context = ssl.create_default_context(cafile=tls.ca)
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1"
    ) as sock:
        message = f"<13>1 - {HOSTNAME} interop - probe - {{}}".encode()
        sock.sendall(str(len(message)).encode() + b" " + message)
        if close_notify:
            sock.settimeout(0)
            with contextlib.suppress(ssl.SSLError):  # the server's answer is not awaited
                sock.unwrap()


def test_our_receiver_and_rsyslog_agree_on_a_close_without_close_notify(
    tls: TlsFiles, rsyslogd_factory
) -> None:
    daemon = rsyslogd_factory(tls)
    with SyslogReceiver(certfile=tls.server_cert, keyfile=tls.server_key) as ours:
        for close_notify in (True, False):
            _send_one(daemon.port, tls, close_notify)
            _send_one(ours.port, tls, close_notify)
            deadline = time.monotonic() + 5
            while (daemon.complaints() == [] or ours.errors == []) and not close_notify:
                assert time.monotonic() < deadline, (daemon.complaints(), ours.errors)
                time.sleep(0.02)
            if close_notify:
                time.sleep(0.2)
                assert daemon.complaints() == [] and ours.errors == []
        assert "non-properly terminated" in " ".join(daemon.complaints())
        assert ours.errors == ["TLS connection closed without close_notify (RFC 5425 section 4.4)"]
        assert len(daemon.received(2)) == 2 and len(ours.received) == 2
