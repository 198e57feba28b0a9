"""The intake contract: every format has its intake, every siem option is read by someone,
and each intake reads an answer as the delivery expects (unit level; the end-to-end and hostile
tests prove the same over real HTTP)."""

from __future__ import annotations

import re

import pytest
import requests

from di2siem.config import parse
from di2siem.config.siem import FORMATS, SIEM
from di2siem.intakes import INTAKES, intake_for
from di2siem.intakes.base import Verdict

# read by the delivery, the batcher or the shaper, whatever the intake
COMMON = {
    "format",
    "batch_size",
    "max_batch_bytes",
    "batch_delay_milliseconds",
    "timestamp_field_name",
    "custom_log_fields",
    "timeout_seconds",
    "ca_bundle",
    "nest_under",
}


URLS = {"syslog": "tls://siem.example:6514"}  # formats that are not HTTP


def _siem(fmt: str, **siem):
    raw = {
        "jumpcloud": {"api_key": "jc-key-for-tests"},
        "siem": {"url": URLS.get(fmt, "https://siem.example/in"), "format": fmt, **siem},
    }
    return parse(raw, "/c.json").siem


def _answer(status: int, body: bytes = b"", **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers)
    return response


def test_every_format_has_its_intake() -> None:
    assert set(INTAKES) == set(FORMATS)
    for fmt in FORMATS:
        assert intake_for(_siem(fmt, api_key="cx-key-for-tests")).name == fmt


def test_every_siem_option_is_read_by_an_intake_or_by_all() -> None:
    declared = {field.key for field in SIEM.fields}
    read = set(COMMON).union(*(kind.options for kind in INTAKES.values()))
    assert declared - read == set(), "declared siem options no intake reads"
    assert read - declared == set(), "intake options that are not declared in config/siem.py"


@pytest.mark.parametrize("fmt", ["json_lines", "json_array", "coralogix"])
@pytest.mark.parametrize(
    ("status", "body", "headers", "verdict"),
    [
        (200, b"", {}, Verdict.DELIVERED),
        (202, b'{"ok":true}', {}, Verdict.DELIVERED),
        (204, b"", {}, Verdict.DELIVERED),
        (207, b"", {}, Verdict.REFUSED),
        (200, b'{"errors":true,"items":[]}', {}, Verdict.REFUSED),
        (200, b'{"success":false}', {}, Verdict.REFUSED),
        (413, b"too large", {}, Verdict.SPLIT),
        (429, b"", {"Retry-After": "7"}, Verdict.RETRY),
        (408, b"", {}, Verdict.RETRY),
        (503, b"", {}, Verdict.RETRY),
        (400, b"bad", {}, Verdict.REFUSED),
        (401, b"", {}, Verdict.REFUSED),
        (404, b"", {}, Verdict.REFUSED),
        (418, b"", {}, Verdict.REFUSED),
    ],
)
def test_answers_are_read_the_same_by_the_legacy_intakes_and_coralogix(
    fmt: str, status: int, body: bytes, headers: dict, verdict: Verdict
) -> None:
    intake = intake_for(_siem(fmt, api_key="cx-key-for-tests"))
    outcome = intake.classify(status, _answer(status, body, **headers))
    assert outcome.verdict is verdict
    if verdict is Verdict.REFUSED:
        assert outcome.reason.startswith(f"SIEM answered {status}")
    if status == 429:
        assert outcome.retry_after == 7.0


def test_a_refusal_names_the_credentials_to_check() -> None:
    intake = intake_for(_siem("json_lines", headers={"private_key": "pk-for-tests-0123"}))
    reason = intake.classify(403, _answer(403, b"denied")).reason
    assert reason == "SIEM answered 403: check siem.headers.private_key (denied)"
    assert "pk-for-tests" not in reason


def test_coralogix_authenticates_with_its_key_and_the_generic_formats_do_not() -> None:
    cx = intake_for(_siem("coralogix", api_key="cx-key-for-tests", content_type="text/plain"))
    assert cx.headers() == {
        "Content-Type": "application/json",
        "Authorization": "Bearer cx-key-for-tests",
    }
    lines = intake_for(_siem("json_lines", api_key="cx-key-for-tests", content_type="text/plain"))
    assert lines.headers() == {"Content-Type": "text/plain"}
    assert lines.probe_body() == b"" and cx.probe_body() == b"[]"


def test_the_coralogix_envelope_wraps_the_shaped_text() -> None:
    cfg = _siem("coralogix", api_key="cx-key-for-tests", severity="auto")
    envelope = intake_for(cfg).envelope
    assert envelope is not None
    event = {"service": "sso", "event_type": "login", "success": False, "organization": "o1"}
    head = envelope.head(event)
    assert envelope.wrap('{"a":1}', 1671375423801, head) == (
        '{"applicationName":"jumpcloud","subsystemName":"directory-insights","severity":4,'
        '"timestamp":1671375423801,"category":"sso","className":"login","computerName":"o1",'
        '"text":{"a":1}}'
    )
    assert intake_for(_siem("json_array")).envelope is None


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, b"{}", Verdict.DELIVERED),
        (200, b"", Verdict.DELIVERED),
        (200, b'{"partialSuccess":{}}', Verdict.DELIVERED),
        (200, b'{"partialSuccess":{"rejectedLogRecords":"0"}}', Verdict.DELIVERED),
        (200, b'{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"x"}}', Verdict.PARTIAL),
        (429, b"", Verdict.RETRY),
        (502, b"", Verdict.RETRY),
        (503, b"", Verdict.RETRY),
        (504, b"", Verdict.RETRY),
        (408, b"", Verdict.REFUSED),
        (500, b"", Verdict.REFUSED),
        (400, b"", Verdict.REFUSED),
        (413, b"", Verdict.SPLIT),
    ],
)
def test_otlp_reads_answers_as_the_protocol_says(status: int, body: bytes, verdict) -> None:
    intake = intake_for(_siem("otlp", url="https://otel.example:4318/v1/logs"))
    outcome = intake.classify(status, _answer(status, body))
    assert outcome.verdict is verdict
    if verdict is Verdict.PARTIAL:
        assert outcome.refused_count == 3 and "SIEM rejected 3 log record(s)" in outcome.reason


@pytest.mark.parametrize(
    ("event", "pri"),
    [
        ({}, 16 * 8 + 6),  # info
        ({"success": False}, 16 * 8 + 4),  # warning
        ({"severity": "medium"}, 16 * 8 + 4),
        ({"severity": "high"}, 16 * 8 + 3),  # error
        ({"severity": "critical"}, 16 * 8 + 2),
    ],
)
def test_syslog_pri_is_the_facility_and_the_events_own_severity(event: dict, pri: int) -> None:
    envelope = intake_for(_siem("syslog")).envelope
    assert envelope.head(event)[0] == pri


def test_syslog_msgid_timestamp_and_octet_count() -> None:
    from di2siem.intakes.syslog import msgid, timestamp

    assert msgid("a" * 40) == "a" * 32
    assert msgid("user login\tattempt") == "userloginattempt"
    assert msgid("é") == msgid(None) == "-"
    assert timestamp(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert timestamp(None) == timestamp(-1) == timestamp(10**17) == "-"
    envelope = intake_for(_siem("syslog", hostname="h", app_name="app")).envelope
    record = envelope.wrap('{"x":"é"}', 0, (134, "t"))
    message = '<134>1 1970-01-01T00:00:00.000Z h app - t - {"x":"é"}'
    assert record == f"{len(message.encode())} {message}"
    lf = intake_for(_siem("syslog", framing="lf")).envelope
    assert not lf.wrap("{}", 0, (134, "t")).split(" ")[0].isdigit()


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("tcp://192.0.2.1:514", "plain tcp:// is only allowed for loopback hosts"),
        ("tcp://127.0.0.1", "tcp:// needs a port"),
        ("https://siem.example/in", "must be a tls://host:port URL"),
        ("tls://siem.example:6514/path", "no path, query or credentials"),
        ("tls://user:pw@siem.example", "no path, query or credentials"),
    ],
)
def test_syslog_url_rules(url: str, error: str) -> None:
    from di2siem.errors import ConfigError

    with pytest.raises(ConfigError, match=error):
        _siem("syslog", url=url)


def test_syslog_options_are_checked() -> None:
    from di2siem.errors import ConfigError

    assert _siem("syslog", url="tcp://localhost:5140").url == "tcp://localhost:5140"
    with pytest.raises(ConfigError, match=re.escape("siem.app_name: must be 1..48")):
        _siem("syslog", app_name="has space")
    with pytest.raises(ConfigError, match=re.escape("siem.facility: must be a syslog facility")):
        _siem("syslog", facility="local9")
    with pytest.raises(ConfigError, match=re.escape("client_key: set without siem.client_cert")):
        _siem("syslog", client_key=__file__)
    with pytest.raises(ConfigError, match=re.escape("siem.client_cert: file not found")):
        _siem("syslog", client_cert="/nonexistent.pem")
