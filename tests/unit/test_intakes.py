"""The intake contract: every format has its intake, every siem option is read by someone,
and each intake reads an answer as the delivery expects (unit level; the end-to-end and hostile
tests prove the same over real HTTP)."""

from __future__ import annotations

import json
import re

import pytest
import requests

from di2siem.config import parse
from di2siem.config.siem import FORMATS, SIEM
from di2siem.intakes import INTAKES, intake_class, intake_for
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


# the settings a format needs besides the URL, or instead of it
REQUIRED = {
    "sentinel": {
        "endpoint": "https://dce-1.eastus-1.ingest.monitor.azure.com",
        "dcr_immutable_id": "dcr-" + "0123456789abcdef" * 2,
        "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "3f1c2b7a-5d4e-4a9b-8c6d-0e1f2a3b4c5d",
        "client_secret": "app-secret-for-tests",
    }
}
URLS = {"syslog": "tls://siem.example:6514"}  # formats that are not HTTP


def _siem(fmt: str, **siem):
    where = REQUIRED.get(fmt, {"url": URLS.get(fmt, "https://siem.example/in")})
    raw = {
        "jumpcloud": {"api_key": "jc-key-for-tests"},
        "siem": {**where, "format": fmt, **siem},
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
    assert all(intake_class(fmt).name == fmt for fmt in INTAKES)
    for fmt in FORMATS:
        siem = _siem(fmt, api_key="cx-key-for-tests", token="hec-token-for-tests")
        assert intake_for(siem).name == fmt


def test_every_siem_option_is_read_by_an_intake_or_by_all() -> None:
    declared = {field.key for field in SIEM.fields}
    read = set(COMMON).union(*(intake_class(fmt).options for fmt in INTAKES))
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


def _bulk(*statuses: int) -> bytes:
    items = [
        {
            "create": {
                "status": status,
                **(
                    {"error": {"type": "t", "reason": "r"}}
                    if status > 300 and status != 409
                    else {}
                ),
            }
        }
        for status in statuses
    ]
    return json.dumps({"errors": True, "items": items}).encode()


ES_KEY = "ZXMtaWQ6ZXMta2V5LWZvci10ZXN0cw=="


@pytest.mark.parametrize(
    ("status", "body", "verdict", "retry", "refused"),
    [
        (200, _bulk(201, 201), Verdict.ITEMS, (), ()),
        (200, _bulk(201, 409), Verdict.ITEMS, (), ()),
        (200, _bulk(429, 201, 429), Verdict.ITEMS, (0, 2), ()),
        (200, _bulk(201, 400, 429), Verdict.ITEMS, (2,), (1,)),
        (200, _bulk(403), Verdict.ITEMS, (), (0,)),
        (200, b"{}", Verdict.REFUSED, (), ()),
        (200, b"not json", Verdict.REFUSED, (), ()),
        (413, b"", Verdict.SPLIT, (), ()),
        (429, b"", Verdict.RETRY, (), ()),
        (503, b"", Verdict.RETRY, (), ()),
        (401, b"", Verdict.REFUSED, (), ()),
        (400, b"", Verdict.REFUSED, (), ()),
    ],
)
def test_elasticsearch_reads_the_bulk_answer_item_by_item(
    status: int, body: bytes, verdict, retry: tuple, refused: tuple
) -> None:
    intake = intake_for(_siem("elasticsearch", url="https://es.example:9200", api_key=ES_KEY))
    outcome = intake.classify(status, _answer(status, body))
    assert outcome.verdict is verdict
    assert outcome.retry_items == retry
    assert tuple(index for index, _ in outcome.refused_items) == refused
    if verdict is Verdict.ITEMS:
        assert outcome.items_answered == len(json.loads(body)["items"])


def test_the_elasticsearch_envelope_is_a_create_action_and_a_stamped_document() -> None:
    intake = intake_for(_siem("elasticsearch", url="https://es.example:9200/", api_key=ES_KEY))
    assert intake.post_url() == (
        "https://es.example:9200/logs-jumpcloud.directory_insights-default/_bulk"
    )
    assert intake.headers()["Authorization"] == f"ApiKey {ES_KEY}"
    envelope = intake.envelope
    head = envelope.head({"id": "abc"}, "abc")
    record = envelope.wrap('{"a":1,"@timestamp":"old"}', 1671375423801, head)
    action, document = record.split("\n")
    assert json.loads(action) == {"create": {"_id": "abc"}}
    assert json.loads(document) == {"@timestamp": "2022-12-18T14:57:03.801Z", "a": 1}
    assert envelope.wrap("{}", 0, head).endswith('{"@timestamp":"1970-01-01T00:00:00.000Z"}')
    assert json.loads(envelope.head({"x": 1}).strip())["create"]["_id"].startswith("blake2b:")


@pytest.mark.parametrize(
    ("status", "headers", "verdict"),
    [
        (204, {}, Verdict.DELIVERED),
        (200, {}, Verdict.REFUSED),  # only 204 is the API's success
        (413, {}, Verdict.SPLIT),
        (401, {}, Verdict.REAUTH),
        (429, {"Retry-After": "7"}, Verdict.RETRY),
        (408, {}, Verdict.RETRY),
        (500, {}, Verdict.RETRY),
        (503, {"Retry-After": "2"}, Verdict.RETRY),
        (400, {}, Verdict.REFUSED),
        (403, {}, Verdict.REFUSED),
        (404, {}, Verdict.REFUSED),
        (409, {}, Verdict.REFUSED),
    ],
)
def test_sentinel_reads_answers_as_the_logs_ingestion_api_says(
    status: int, headers: dict, verdict: Verdict
) -> None:
    intake = intake_for(_siem("sentinel", max_batch_bytes=5_000_000))
    body = b'{"error":{"code":"X","message":"m"}}'
    outcome = intake.classify(status, _answer(status, body, **headers))
    assert outcome.verdict is verdict
    if "Retry-After" in headers:
        assert outcome.retry_after == float(headers["Retry-After"])
    if status == 403:
        assert '"Monitoring Metrics Publisher"' in outcome.reason
    assert intake.limits().max_bytes == 1_000_000  # the API's limit, whatever the setting
    assert intake.cfg.url == (
        "https://dce-1.eastus-1.ingest.monitor.azure.com/dataCollectionRules/"
        "dcr-0123456789abcdef0123456789abcdef/streams/Custom-JumpCloudDI_CL"
        "?api-version=2023-01-01"
    )


HEC_ACK = b'{"text":"Success","code":0,"ackId":7}'


@pytest.mark.parametrize(
    ("ack", "status", "body", "verdict", "said"),
    [
        (False, 200, b'{"text":"Success","code":0}', Verdict.DELIVERED, ""),
        (True, 200, HEC_ACK, Verdict.DELIVERED, ""),
        (True, 200, b'{"text":"Success","code":0}', Verdict.REFUSED, "without an ackId"),
        (False, 503, b'{"text":"Server is busy","code":9}', Verdict.RETRY, "code 9"),
        (False, 500, b'{"text":"Internal server error","code":8}', Verdict.RETRY, "code 8"),
        (False, 413, b"", Verdict.SPLIT, ""),
        (False, 401, b'{"text":"Token is required","code":2}', Verdict.REFUSED, "siem.token"),
        (False, 401, b'{"text":"Invalid authorization","code":3}', Verdict.REFUSED, "siem.token"),
        (False, 403, b'{"text":"Invalid token","code":4}', Verdict.REFUSED, "siem.token"),
        (False, 403, b'{"text":"Token disabled","code":1}', Verdict.REFUSED, "siem.token"),
        (True, 400, b'{"text":"Data channel is missing","code":10}', Verdict.REFUSED, "siem.ack"),
        (False, 400, b'{"text":"ACK is disabled","code":14}', Verdict.REFUSED, "siem.ack"),
        (False, 400, b'{"text":"No data","code":5}', Verdict.REFUSED, "siem.url"),
    ]
    + [
        (False, 400, b'{"text":"x","code":%d,"invalid-event-number":3}' % code, Verdict.REFUSED,
         "{event}")
        for code in (6, 7, 12, 13)
    ],
)  # fmt: skip
def test_splunk_hec_reads_hec_reply_codes(ack, status, body, verdict, said) -> None:
    intake = intake_for(_siem("splunk_hec", token="hec-token-for-tests", ack=ack))
    outcome = intake.classify(status, _answer(status, body))
    assert outcome.verdict is verdict
    assert said in outcome.reason
    if said == "{event}":
        assert outcome.record_index == 3
    if status == 200 and ack and verdict is Verdict.DELIVERED:
        assert outcome.ack_id == 7


def test_splunk_hec_url_envelope_and_channel() -> None:
    plain = intake_for(_siem("splunk_hec", url="https://s.example:8088", token="hec-token-xyz1"))
    assert plain.post_url() == "https://s.example:8088/services/collector/event"
    assert plain.acknowledgement() is None and "X-Splunk-Request-Channel" not in plain.headers()
    assert plain.headers()["Authorization"] == "Splunk hec-token-xyz1"
    assert plain.envelope.wrap('{"a":1}', 1700000000007, None) == (
        '{"time":1700000000.007,"event":{"a":1},"sourcetype":"jumpcloud:directory_insights"}'
    )
    acked = intake_for(
        _siem("splunk_hec", url="https://s.example/x/services/collector", token="t" * 8, ack=True)
    )
    assert acked.post_url() == "https://s.example/x/services/collector"
    assert acked.headers()["X-Splunk-Request-Channel"] == acked.acknowledgement().channel
    url, body, headers = acked.ack_query("c-1", [1, 2])
    assert headers == {"X-Splunk-Request-Channel": "c-1"}
    assert url == "https://s.example/x/services/collector/ack" and body == b'{"acks": [1, 2]}'
    answer = _answer(200, b'{"acks":{"1":true,"2":false}}')
    assert acked.ack_answer(200, answer) == {1: True, 2: False}


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
