"""The syslog intake end to end: the collector against the JumpCloud simulator and a syslog
receiver of our own (sandbox syslog.py) over real TCP and TLS on loopback, with throwaway
certificates made at test time (sandbox tlsfiles.py)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    assert_nothing_recorded,
    counts,
    recent_events,
    summary,
)
from di2siem.intakes.severity import auto_severity
from di2siem.timeutil import format_ms, parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.syslog import SyslogReceiver
from di2siem_sandbox.tlsfiles import TlsFiles, make_tls_files
from intake_rigs import IntakeRun

CUSTOM = {"reqHost": "jumpcloud", "customField": "jumpcloud", "severity": "info"}
SMALL_RCVBUF = 4096  # what the receiver has not read stays unacknowledged at the sender


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def receiver(tls: TlsFiles | None, **kwargs: Any) -> SyslogReceiver:
    if tls is None:
        return SyslogReceiver(**kwargs)
    return SyslogReceiver(
        certfile=tls.server_cert, keyfile=tls.server_key, client_ca=tls.ca, **kwargs
    )


class Syslog(IntakeRun):
    def __init__(self, tmp: Path, jc: JumpCloudSimulator, tls: TlsFiles) -> None:
        super().__init__(tmp, jc)
        self.tls = tls

    def write(self, rx: SyslogReceiver, **siem: Any) -> None:
        self.write_siem(
            {
                "format": "syslog",
                "url": rx.url,
                "ca_bundle": self.tls.ca,
                "hostname": "di2siem-test",
                "batch_size": 50,
                "batch_delay_milliseconds": 0,
                "custom_log_fields": CUSTOM,
                **siem,
            }
        )


@pytest.fixture
def syslog(tmp_path: Path, jcsim: JumpCloudSimulator, tls: TlsFiles) -> Syslog:
    return Syslog(tmp_path, jcsim, tls)


def expected_message(event: dict, pri: int, msgid: str) -> bytes:
    shaped = {k: v for k, v in event.items() if k != "timestamp"}
    shaped["jc_timestamp"] = event["timestamp"]
    shaped.update(CUSTOM)
    text = json.dumps(shaped, separators=(",", ":"), ensure_ascii=False)
    stamp = format_ms(parse_ms(event["timestamp"]))
    return f"<{pri}>1 {stamp} di2siem-test jumpcloud - {msgid} - {text}".encode()


@pytest.mark.parametrize(("framing", "secure"), [("octet_counting", True), ("lf", False)])
def test_every_event_is_one_rfc5424_message_byte_for_byte(
    syslog: Syslog, capsys, framing: str, secure: bool
) -> None:
    events = recent_events(60)
    events[3]["success"] = False  # warning: syslog severity 4
    events[4]["event_type"] = "ünïcode event type that is much longer than thirty-two"
    syslog.jc.add_events(events)
    with receiver(syslog.tls if secure else None, framing=framing) as rx:
        syslog.write(rx, framing=framing, facility="auth")
        rc, err = syslog.run(capsys)
        assert rc == 0, err
        assert counts(err)["shipped"] == 60
        assert rx.errors == []
        raw = [m.raw for m in rx.received]
        assert len(raw) == 60
        for event, message in zip(events, raw):
            severity = {6: 2, 5: 3, 4: 4, 3: 6, 2: 7, 1: 7}[auto_severity(event, 3)]
            msgid = (
                "ncodeeventtypethatismuchlongerth"
                if event is events[4]
                else event["event_type"][:32]
            )
            assert message == expected_message(event, 4 * 8 + severity, msgid)
        assert rx.received[3].severity == 4 and rx.received[3].facility == 4
        rc, err = syslog.run(capsys)
        assert rc == 0 and len(rx.received) == 60  # nothing twice
        assert rx.connections == 1  # the second run had nothing to send


def test_a_receiver_that_stops_reading_fails_the_run_within_the_timeout(
    syslog: Syslog, capsys
) -> None:
    syslog.jc.add_events(recent_events(300))
    with receiver(syslog.tls, rcvbuf=SMALL_RCVBUF) as rx:
        rx.paused.set()
        syslog.write(rx, batch_size=300, timeout_seconds=1)
        started = time.monotonic()
        rc, err = syslog.run(capsys)
        took = time.monotonic() - started
        assert rc == 1, err
        reasons = [line for line in err.splitlines() if "siem.timeout_seconds" in line]
        assert reasons and "the receiver stopped reading" in reasons[0], err
        # three attempts of one timeout each (the resend cap), plus the short backoffs
        assert took < 3 * 1 + 3, took
        assert_nothing_recorded(syslog.state_dir)
        assert rx.received == []


def test_a_connection_dropped_mid_batch_resends_that_batch_once(syslog: Syslog, capsys) -> None:
    events = recent_events(400)
    syslog.jc.add_events(events)
    with receiver(syslog.tls, rcvbuf=SMALL_RCVBUF) as rx:
        rx.drop_after = 10
        syslog.write(rx, batch_size=200)
        rc, err = syslog.run(capsys)
        assert rc == 0, err
        assert rx.drops == 1 and rx.connections == 2
        ids = Counter(json.loads(m)["id"] for m in rx.messages())
        assert set(ids) == {e["id"] for e in events}  # nothing lost
        twice = {i for i, n in ids.items() if n > 1}
        # the first 10 of the batch in flight arrived twice, nothing else and nothing more
        assert twice == {e["id"] for e in events[:10]} and max(ids.values()) == 2
        assert summary(err).get("resent") == "1", err


def test_plain_tcp_to_another_host_is_refused_by_the_configuration(syslog: Syslog, capsys) -> None:
    with receiver(None) as rx:
        syslog.write(rx, url="tcp://192.0.2.10:514")
        rc, out = syslog.run(capsys)
    assert rc == 2
    assert "siem.url: plain tcp:// is only allowed for loopback hosts" in out


def test_a_closed_receiver_port_fails_within_seconds_naming_the_refusal(
    syslog: Syslog, capsys
) -> None:
    syslog.jc.add_events(recent_events(5))
    with receiver(None) as rx:
        url, port = rx.url, rx.port
    syslog.write(rx, url=url)  # nobody listens there any more
    cfg = json.loads(syslog.path.read_text())  # the schedule a refusal no longer waits through
    cfg.update(max_retries=5, retry_base_delay_seconds=1, retry_max_delay_seconds=60)
    syslog.path.write_text(json.dumps(cfg))
    started = time.monotonic()
    rc, out = syslog.run(capsys)
    assert rc == 1 and time.monotonic() - started < 3, out
    assert f"SIEM 127.0.0.1:{port}: connection refused (gave up after 3 attempts" in out


def test_the_receiver_is_verified_against_ca_bundle(syslog: Syslog, capsys) -> None:
    syslog.jc.add_events(recent_events(5))
    with receiver(syslog.tls) as rx:
        syslog.write(rx, ca_bundle=syslog.tls.other_ca)
        rc, out = syslog.run(capsys)
        assert rc == 1
        verify = f"SIEM 127.0.0.1:{rx.port}: TLS certificate verify failed: unable to get local"
        assert verify + " issuer certificate: check siem.url" in out, out
        assert "set siem.ca_bundle" in out
        rc, out = syslog.run(capsys, command="check")
        assert rc == 1 and verify in out
        assert rx.received == [] and rx.bytes_read == 0


def test_check_makes_the_tls_handshake_and_sends_nothing(syslog: Syslog, capsys) -> None:
    tls = syslog.tls
    with receiver(tls, require_client_cert=True) as rx:
        syslog.write(rx)
        rc, out = syslog.run(capsys, command="check")
        assert rc == 1 and "check siem.client_cert" in out, out
        syslog.write(rx, client_cert=tls.client_cert, client_key=tls.client_key)
        rc, out = syslog.run(capsys, command="check")
        assert rc == 0, out
        assert "TLS handshake done" in out and "nothing sent" in out
        assert rx.handshakes == 1 and rx.received == [] and rx.bytes_read == 0
        syslog.jc.add_events(recent_events(5))
        rc, err = syslog.run(capsys)
        assert rc == 0, err
        assert len(rx.received) == 5


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"<192>1 - - - - - -", "PRI: 192 is over 191"),
        (b"<01>1 - - - - - -", "HEADER"),
        (b"<13>2 - - - - - -", "HEADER"),
        (b"<13>1 2026-13-01T00:00:00Z - - - - -", "not a valid date"),
        (b"<13>1 2026-01-01T00:00:00.1234567Z - - - - -", "TIMESTAMP"),
        (b"<13>1 2026-01-01 - - - - -", "TIMESTAMP"),
        (b"<13>1 - " + b"h" * 256 + b" - - - -", "HOSTNAME"),
        (b"<13>1 - - " + b"a" * 49 + b" - - -", "APP-NAME"),
        (b"<13>1 - - - " + b"p" * 129 + b" - -", "PROCID"),
        (b"<13>1 - - - - " + b"m" * 33 + b" -", "MSGID"),
        (b"<13>1 - - - - - -x", "MSG: must follow"),
        (b'<13>1 - - - - - [id a="]"] x', "unescaped ]"),
        (b"<13>1 - - - - - - \xff", "not UTF-8"),
    ],
)
def test_the_receiver_parses_rfc5424_strictly(message: bytes, error: str) -> None:
    from di2siem_sandbox.syslog import Invalid, parse_message

    with pytest.raises(Invalid, match=error):
        parse_message(message)


def test_the_receiver_reads_what_rfc5424_allows() -> None:
    from di2siem_sandbox.syslog import parse_message

    parsed = parse_message(
        b'<165>1 2003-10-11T22:14:15.003Z h a 1 ID47 [x@1 k="\\]"] \xef\xbb\xbfm'
    )
    assert (parsed.facility, parsed.severity, parsed.msgid, parsed.msg) == (20, 5, "ID47", "m")
    assert parse_message(b"<0>1 - - - - - -").msg is None
