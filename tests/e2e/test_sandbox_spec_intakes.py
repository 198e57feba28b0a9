"""Spec tests of the intake simulators: each fact of shared/reference/intakes.md that a simulator
models gets a small test over raw HTTP (requests) or TCP/TLS (socket, ssl), not through the
collector, whose docstring quotes the fact. Where the reference says "unconfirmed", both
positions of the simulator's switch are tested. The simulators share our assumptions; these
tests pin the assumptions to the reference instead."""

from __future__ import annotations

import base64
import fcntl
import gzip
import http.client
import json
import socket
import ssl
import struct
import termios
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
import requests

from di2siem_sandbox.elasticsearch import DEFAULT_DATA_STREAM, ElasticsearchSim
from di2siem_sandbox.otlp import DEFAULT_MAX_BODY_BYTES as OTLP_CAP
from di2siem_sandbox.otlp import OtlpReceiver
from di2siem_sandbox.sentinel import (
    CLIENT_ID,
    DCR_ID,
    FIELD_LIMIT_BYTES,
    SCOPE,
    STREAM,
    TENANT,
    SentinelSimulator,
)
from di2siem_sandbox.splunk_hec import DEFAULT_MAX_CONTENT_LENGTH, SplunkHecSimulator
from di2siem_sandbox.syslog import SyslogReceiver
from di2siem_sandbox.tlsfiles import TlsFiles, make_tls_files

# -- Splunk HTTP Event Collector ---------------------------------------------------------------

HEC_TOKEN = "6f1c2a9e-5b7d-4e3f-9a81-2c4d6e8f0a1b"
SPLUNK = {"Authorization": f"Splunk {HEC_TOKEN}"}
EVENT_PATH = "/services/collector/event"
CHANNEL = "X-Splunk-Request-Channel"


@pytest.fixture
def hec() -> Iterator[SplunkHecSimulator]:
    with SplunkHecSimulator(token=HEC_TOKEN) as sim:
        yield sim


@pytest.fixture
def hec_ack() -> Iterator[SplunkHecSimulator]:
    with SplunkHecSimulator(token=HEC_TOKEN, ack=True) as sim:
        yield sim


def hec_post(
    sim: SplunkHecSimulator,
    body: bytes | str,
    path: str = EVENT_PATH,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    return requests.post(sim.url + path, data=data, headers={**SPLUNK, **(headers or {})})


def hec_events(*events: Any) -> str:
    return "".join(json.dumps({"event": e}) for e in events)


@pytest.mark.parametrize("path", ["/services/collector/event", "/services/collector"])
def test_hec_event_endpoints(hec, path: str) -> None:
    """`POST /services/collector/event` (also `/services/collector`)."""
    answer = hec_post(hec, hec_events("a"), path)
    assert answer.status_code == 200 and answer.json() == {"text": "Success", "code": 0}
    assert hec.events() == ["a"]


def test_hec_health_endpoint(hec) -> None:
    """`GET /services/collector/health` ... health: 17 healthy, 18-20 unhealthy (503)."""
    answer = requests.get(hec.url + "/services/collector/health")
    assert (answer.status_code, answer.json()["code"]) == (200, 17)
    hec.unhealthy = True
    answer = requests.get(hec.url + "/services/collector/health")
    assert answer.status_code == 503 and answer.json()["code"] in (18, 19, 20)


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [(None, 401, 2), (f"Bearer {HEC_TOKEN}", 401, 3), ("Splunk 0000-unknown", 403, 4)],
)
def test_hec_auth_answers(hec, authorization: str | None, status: int, code: int) -> None:
    """Auth: `Authorization: Splunk <token>` (a GUID). No header -> 401 code 2; another
    scheme -> 401 code 3; unknown token -> 403 code 4."""
    headers = {"Authorization": authorization} if authorization else {}
    answer = requests.post(hec.url + EVENT_PATH, data=hec_events("a"), headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert hec.events() == []


def test_hec_disabled_token(hec) -> None:
    """disabled -> 403 code 1."""
    hec.tokens[HEC_TOKEN]["disabled"] = True
    answer = hec_post(hec, hec_events("a"))
    assert (answer.status_code, answer.json()["code"]) == (403, 1)


def test_hec_body_is_concatenated_objects(hec) -> None:
    """Body: JSON objects concatenated (no array, no commas; newlines between are fine)."""
    body = json.dumps({"event": 1}) + json.dumps({"event": 2}) + "\n\n" + json.dumps({"event": 3})
    assert hec_post(hec, body).status_code == 200
    assert hec.events() == [1, 2, 3]
    answer = hec_post(hec, json.dumps([{"event": 4}]))
    assert (answer.status_code, answer.json()["code"]) == (400, 6)
    answer = hec_post(hec, '{"event": 5},{"event": 6}')
    assert (answer.status_code, answer.json()["code"]) == (400, 6)


def test_hec_envelope_fields(hec) -> None:
    """Envelope: `event` (required, string or object), `time` (epoch seconds, decimals for ms),
    `host`, `source`, `sourcetype`, `index`, `fields` (indexed fields)."""
    envelope = {
        "event": {"id": "x"},
        "time": 1700000000.123,
        "host": "h",
        "source": "s",
        "sourcetype": "jumpcloud:directory_insights",
        "index": "main",
        "fields": {"org": "o"},
    }
    assert hec_post(hec, json.dumps(envelope) + json.dumps({"event": "text"})).status_code == 200
    assert hec.received == [envelope, {"event": "text"}]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", 5),
        ('{"event": "a"}{"event": ', 6),
        ('{"event": "a"}{"event": "b", "index": "nope"}', 7),
        ('{"event": "a"}{"time": 1}', 12),
        ('{"event": "a"}{"event": ""}', 13),
    ],
)
def test_hec_400_codes_name_the_bad_event(hec, body: str, code: int) -> None:
    """5 no data, 6 invalid data format, 7 incorrect index, 12 event field required, 13 event
    field blank (400, with `"invalid-event-number": i`, the 0-based index of the bad event)."""
    answer = hec_post(hec, body)
    assert answer.status_code == 400
    data = answer.json()
    assert data["code"] == code and isinstance(data["text"], str)
    if code != 5:
        assert data["invalid-event-number"] == 1


@pytest.mark.parametrize("indexed", [True, False])
def test_hec_events_before_the_invalid_one_unconfirmed(hec, indexed: bool) -> None:
    """Whether the events before `invalid-event-number` were indexed: **unconfirmed** (widely
    reported: yes)."""
    hec.index_before_invalid = indexed
    answer = hec_post(hec, '{"event": "a"}{"event": "b"}{"event": ""}{"event": "c"}')
    assert answer.json()["invalid-event-number"] == 2
    assert hec.events() == (["a", "b"] if indexed else [])


def test_hec_internal_error_is_500_code_8(hec) -> None:
    """8 internal error (500)."""
    hec.failing = 1
    answer = hec_post(hec, hec_events("a"))
    assert (answer.status_code, answer.json()["code"]) == (500, 8)
    assert hec.events() == []


@pytest.mark.parametrize("retry_after", [None, 3])
def test_hec_busy_is_503_code_9_retry_after_unconfirmed(hec, retry_after: int | None) -> None:
    """9 server busy (503, retry) ... Retry-After on 503: **unconfirmed**."""
    hec.busy, hec.busy_retry_after = 1, retry_after
    answer = hec_post(hec, hec_events("a"))
    assert (answer.status_code, answer.json()["code"]) == (503, 9)
    assert answer.headers.get("Retry-After") == (None if retry_after is None else "3")
    assert hec.events() == []
    assert hec_post(hec, hec_events("a")).status_code == 200  # busy passes: a retry lands


def test_hec_ack_needs_a_channel(hec_ack) -> None:
    """every request carries a channel GUID (`X-Splunk-Request-Channel` header or
    `?channel=`) ... 10 data channel missing, 11 invalid channel (400)."""
    answer = hec_post(hec_ack, hec_events("a"))
    assert (answer.status_code, answer.json()["code"]) == (400, 10)
    answer = hec_post(hec_ack, hec_events("a"), headers={"X-Splunk-Request-Channel": "nope"})
    assert (answer.status_code, answer.json()["code"]) == (400, 11)
    channel = str(uuid.uuid4())
    by_query = hec_post(hec_ack, hec_events("a"), path=f"{EVENT_PATH}?channel={channel}")
    assert by_query.status_code == 200 and by_query.json()["ackId"] == 0


def test_hec_ack_ids_are_per_channel_one_per_request(hec_ack) -> None:
    """the 200 answer adds an integer `ackId` (per channel, one per request)."""
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    ids = []
    for channel in (one, one, two, one):
        answer = hec_post(hec_ack, hec_events("a", "b"), headers={CHANNEL: channel})
        ids.append(answer.json()["ackId"])
    assert ids == [0, 1, 0, 2] and all(type(i) is int for i in ids)


def ack_query(sim: SplunkHecSimulator, channel: str, ids: list[int]) -> requests.Response:
    return hec_post(
        sim, json.dumps({"acks": ids}), "/services/collector/ack", headers={CHANNEL: channel}
    )


def test_hec_ack_query_true_once_then_forgotten(hec_ack) -> None:
    """Query: `POST /services/collector/ack` on the same channel, body `{"acks":[0,1,2]}` ->
    answer `{"acks":{"0":true,"1":false,"2":true}}`. `true` is reported once, then forgotten."""
    channel = str(uuid.uuid4())
    for _ in range(3):
        hec_post(hec_ack, hec_events("a"), headers={CHANNEL: channel})
    answer = ack_query(hec_ack, channel, [0, 2, 7])
    assert answer.status_code == 200
    assert answer.json() == {"acks": {"0": True, "2": True, "7": False}}
    assert ack_query(hec_ack, channel, [0, 1, 2]).json() == {
        "acks": {"0": False, "1": True, "2": False}
    }
    other = str(uuid.uuid4())  # an ack is asked on the channel that sent it
    hec_post(hec_ack, hec_events("a"), headers={CHANNEL: channel})
    assert ack_query(hec_ack, other, [3]).json() == {"acks": {"3": False}}


def test_hec_ack_false_means_pending_or_lost(hec_ack) -> None:
    """`false` means pending or lost."""
    channel = str(uuid.uuid4())
    hec_ack.ack_delay_s = 0.3
    hec_post(hec_ack, hec_events("pending"), headers={CHANNEL: channel})
    assert ack_query(hec_ack, channel, [0]).json() == {"acks": {"0": False}}
    time.sleep(0.35)
    assert ack_query(hec_ack, channel, [0]).json() == {"acks": {"0": True}}
    hec_ack.ack_delay_s, hec_ack.lose_acks = 0.0, 1
    answer = hec_post(hec_ack, hec_events("lost"), headers={CHANNEL: channel})
    assert answer.status_code == 200 and answer.json()["ackId"] == 1  # a 200 all the same
    time.sleep(0.05)
    assert ack_query(hec_ack, channel, [1]).json() == {"acks": {"1": False}}
    assert hec_ack.events() == ["pending"]


def test_hec_without_ack_the_ack_endpoint_is_400_code_14(hec) -> None:
    """14 ack disabled (400)."""
    answer = ack_query(hec, str(uuid.uuid4()), [0])
    assert (answer.status_code, answer.json()["code"]) == (400, 14)
    answer = hec_post(hec, hec_events("a"))
    assert "ackId" not in answer.json()  # without ack, a 200 only means "looks valid"


def test_hec_max_content_length_default_and_configurable(hec) -> None:
    """Request size: bounded by `max_content_length` ...; default **unconfirmed** (keep a
    configurable cap, default 1 MiB)."""
    assert DEFAULT_MAX_CONTENT_LENGTH == 1024 * 1024 == hec.max_content_length
    event = json.dumps({"event": "x" * 1000})
    fits = event * (DEFAULT_MAX_CONTENT_LENGTH // len(event))
    assert hec_post(hec, fits).status_code == 200
    assert hec_post(hec, fits + event).status_code == 413
    with SplunkHecSimulator(token=HEC_TOKEN, max_content_length=5000) as small:
        assert hec_post(small, event * 4).status_code == 200
        assert hec_post(small, event * 5).status_code == 413
        assert len(small.events()) == 4


@pytest.mark.parametrize("accepted", [True, False])
def test_hec_gzip_bodies_unconfirmed(hec, accepted: bool) -> None:
    """gzip bodies: **unconfirmed**."""
    hec.accept_gzip = accepted
    body = gzip.compress(hec_events("zipped").encode())
    answer = hec_post(hec, body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == (200 if accepted else 400)
    assert hec.events() == (["zipped"] if accepted else [])


def test_hec_does_not_deduplicate(hec) -> None:
    """No deduplication: resent events are indexed twice."""
    body = json.dumps({"event": {"id": "same"}})
    assert hec_post(hec, body).status_code == hec_post(hec, body).status_code == 200
    assert hec.events() == [{"id": "same"}, {"id": "same"}]


# -- Elasticsearch / OpenSearch _bulk ----------------------------------------------------------

ES_KEY = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
ES_AUTH = {"Authorization": f"ApiKey {ES_KEY}"}
NDJSON = {"Content-Type": "application/x-ndjson"}
STAMP = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def es() -> Iterator[ElasticsearchSim]:
    with ElasticsearchSim(api_key=ES_KEY, users={"shipper": "pw-3c1e9a77"}, bearer_token="tk") as s:
        yield s


def bulk_body(*docs: tuple[str, Any], op: str = "create") -> bytes:
    lines = []
    for doc_id, doc in docs:
        lines += [json.dumps({op: {"_id": doc_id}}), json.dumps(doc)]
    return ("\n".join(lines) + "\n").encode()


def bulk(
    sim: ElasticsearchSim,
    body: bytes,
    path: str = f"/{DEFAULT_DATA_STREAM}/_bulk",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.post(
        sim.url + path, data=body, headers={**ES_AUTH, **NDJSON, **(headers or {})}
    )


def statuses(answer: requests.Response) -> list[int]:
    return [item["create"]["status"] for item in answer.json()["items"]]


def test_es_bulk_paths(es) -> None:
    """`POST /<data stream>/_bulk` (or `/_bulk`), `Content-Type: application/x-ndjson`."""
    assert statuses(bulk(es, bulk_body(("a", {"@timestamp": STAMP})))) == [201]
    action = json.dumps({"create": {"_index": DEFAULT_DATA_STREAM, "_id": "b"}})
    body = f"{action}\n{json.dumps({'@timestamp': STAMP})}\n".encode()
    assert statuses(bulk(es, body, path="/_bulk")) == [201]
    assert es.ids() == ["a", "b"]
    refused = bulk(
        es, bulk_body(("c", {"@timestamp": STAMP})), headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 406 and es.ids() == ["a", "b"]


def test_es_body_is_line_pairs_ending_with_a_newline(es) -> None:
    """pairs of lines (action, then document); the body ends with `\\n`."""
    body = bulk_body(("a", {"@timestamp": STAMP}))
    assert bulk(es, body.rstrip(b"\n")).status_code == 400
    assert bulk(es, body + json.dumps({"create": {"_id": "b"}}).encode() + b"\n").status_code == 400
    assert es.ids() == []
    assert bulk(es, body).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [f"ApiKey {ES_KEY}", "Basic " + base64.b64encode(b"shipper:pw-3c1e9a77").decode(), "Bearer tk"],
)
def test_es_auth_schemes(es, authorization: str) -> None:
    """Auth: `Authorization: ApiKey <base64(id:key)>` (the "encoded" value), or Basic, or
    Bearer."""
    answer = bulk(
        es, bulk_body(("a", {"@timestamp": STAMP})), headers={"Authorization": authorization}
    )
    assert answer.status_code == 200 and statuses(answer) == [201]


@pytest.mark.parametrize(
    "authorization", [None, "ApiKey d3Jvbmc6a2V5", "Basic c2hpcHBlcjpubw==", "Bearer no"]
)
def test_es_request_level_401(es, authorization: str | None) -> None:
    """Request-level: 401/403 auth."""
    headers = {"Authorization": authorization or ""}
    answer = bulk(es, bulk_body(("a", {"@timestamp": STAMP})), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "security_exception"
    assert es.ids() == []


def test_es_data_streams_take_only_create(es) -> None:
    """Data streams accept only `create`."""
    answer = bulk(es, bulk_body(("a", {"@timestamp": STAMP}), op="index"))
    assert answer.status_code == 200 and answer.json()["errors"] is True
    assert answer.json()["items"][0]["index"]["status"] == 400 and es.ids() == []


def test_es_timestamp_is_required(es) -> None:
    """each document needs `@timestamp` (else a per-item error "data stream timestamp field
    [@timestamp] is missing")."""
    answer = bulk(es, bulk_body(("a", {"message": "no time"}), ("b", {"@timestamp": STAMP})))
    items = answer.json()["items"]
    assert answer.status_code == 200 and statuses(answer) == [400, 201]
    assert items[0]["create"]["error"]["reason"] == (
        "data stream timestamp field [@timestamp] is missing"
    )


def test_es_200_even_when_items_fail_in_request_order(es) -> None:
    """**The answer is 200 even when items fail**: `{"took":..,"errors":true|false,
    "items":[...]}`, items in request order, each `{"create":{"_index":..,"_id":..,
    "status":201|409|429|400|..,"error":{"type":..,"reason":..}}}`."""
    es.item_answers = {"b": [429], "c": [400]}
    answer = bulk(es, bulk_body(*((i, {"@timestamp": STAMP}) for i in "abcd")))
    data = answer.json()
    assert answer.status_code == 200 and set(data) == {"took", "errors", "items"}
    assert data["errors"] is True and statuses(answer) == [201, 429, 400, 201]
    for doc_id, item in zip("abcd", data["items"]):
        result = item["create"]
        assert result["_id"] == doc_id and result["_index"] == DEFAULT_DATA_STREAM
        if result["status"] != 201:
            assert set(result["error"]) >= {"type", "reason"}
    clean = bulk(es, bulk_body(("e", {"@timestamp": STAMP})))
    assert clean.json()["errors"] is False


def test_es_item_statuses(es) -> None:
    """Per item: 201 created; **409** `version_conflict_engine_exception` = a document with
    that `_id` already exists; **429** `es_rejected_execution_exception` = retry that item
    later; 400 mapping/parse errors = that document is refused for good."""
    es.item_answers = {"late": [429]}
    es.refuse_ids = {"bad"}
    docs = [(i, {"@timestamp": STAMP}) for i in ("a", "late", "bad")]
    first = bulk(es, bulk_body(*docs)).json()["items"]
    again = bulk(es, bulk_body(*docs)).json()["items"]
    errors = [(i["create"]["status"], i["create"].get("error", {}).get("type")) for i in first]
    assert errors == [
        (201, None),
        (429, "es_rejected_execution_exception"),
        (400, "mapper_parsing_exception"),
    ]
    assert [i["create"]["status"] for i in again] == [409, 201, 400]  # 429: later, it lands
    assert again[0]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert es.ids() == ["a", "late"]


def test_es_deterministic_id_makes_resends_harmless(es) -> None:
    """Deterministic `_id` (e.g. from the DI event id) + `create` makes resends harmless: the
    index itself deduplicates."""
    body = bulk_body(("event-1", {"@timestamp": STAMP, "n": 1}))
    assert statuses(bulk(es, body)) == [201]
    assert statuses(bulk(es, body)) == [409]
    assert es.docs() == [{"@timestamp": STAMP, "n": 1}]


def stream_bulk(sim: ElasticsearchSim, size: int) -> int:
    """The status of a bulk request of ``size`` bytes, streamed (never all in memory)."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=30)
    try:
        conn.putrequest("POST", f"/{DEFAULT_DATA_STREAM}/_bulk")
        for name, value in {**ES_AUTH, **NDJSON, "Content-Length": str(size)}.items():
            conn.putheader(name, value)
        conn.endheaders()
        chunk = b"\n" * (1 << 20)
        for at in range(0, size, len(chunk)):
            conn.send(chunk[: size - at])
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize("configured", [None, 2000])
def test_es_413_over_max_content_length_unconfirmed_default(configured: int | None) -> None:
    """413 over `http.max_content_length` (default 100 MB, **unconfirmed**)."""
    limit = configured or 100 * 1024 * 1024
    kwargs = {"max_body_bytes": configured} if configured else {}
    with ElasticsearchSim(api_key=ES_KEY, **kwargs) as sim:
        assert sim.max_body_bytes == limit
        assert stream_bulk(sim, limit + 1) == 413 and sim.ids() == []
        if configured:
            doc = {"@timestamp": STAMP, "pad": "x" * 900}
            assert bulk(sim, bulk_body(("a", doc))).status_code == 200
            assert bulk(sim, bulk_body(("b", doc), ("c", doc), ("d", doc))).status_code == 413
            assert sim.ids() == ["a"]


def test_es_whole_request_429(es) -> None:
    """429 whole request."""
    es.reject_requests = 1
    answer = bulk(es, bulk_body(("a", {"@timestamp": STAMP})))
    assert answer.status_code == 429
    assert answer.json()["error"]["type"] == "es_rejected_execution_exception"
    assert es.ids() == [] and bulk(es, bulk_body(("a", {"@timestamp": STAMP}))).status_code == 200


# -- Microsoft Sentinel: Logs Ingestion API ----------------------------------------------------

AZ_SECRET = "sentinel-app-secret-7Qx~9vL2"
INGEST = f"/dataCollectionRules/{DCR_ID}/streams/{STREAM}?api-version=2023-01-01"
ROW = {"TimeGenerated": STAMP, "EventId": "a"}


@pytest.fixture
def az() -> Iterator[SentinelSimulator]:
    with SentinelSimulator(client_secret=AZ_SECRET) as sim:
        yield sim


def token_request(sim: SentinelSimulator, **form: str) -> requests.Response:
    fields = {
        "client_id": CLIENT_ID,
        "client_secret": AZ_SECRET,
        "grant_type": "client_credentials",
        "scope": SCOPE,
        **form,
    }
    return requests.post(f"{sim.url}/{TENANT}/oauth2/v2.0/token", data=fields)


def bearer(sim: SentinelSimulator) -> dict[str, str]:
    return {"Authorization": "Bearer " + token_request(sim).json()["access_token"]}


def ingest(
    sim: SentinelSimulator,
    body: Any,
    path: str = INGEST,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {**bearer(sim), "Content-Type": "application/json", **(headers or {})}
    return requests.post(sim.url + path, data=data, headers=sent)


def test_az_ingestion_url(az) -> None:
    """`POST {endpoint}/dataCollectionRules/{dcr immutable id}/streams/{stream}?api-version=
    2023-01-01` ... the immutable id looks like `dcr-<32 hex>`; streams are `Custom-<Table>`
    (custom tables end in `_CL`)."""
    assert DCR_ID.startswith("dcr-") and len(DCR_ID) == 36 and int(DCR_ID[4:], 16) >= 0
    assert STREAM.startswith("Custom-") and STREAM.endswith("_CL")
    assert ingest(az, [ROW]).status_code == 204
    base = f"/dataCollectionRules/{DCR_ID}/streams/{STREAM}"
    assert ingest(az, [ROW], path=base).status_code == 400  # the api-version is required
    assert ingest(az, [ROW], path=base + "?api-version=2021-11-01-preview").status_code == 400
    wrong_dcr = INGEST.replace(DCR_ID, "dcr-" + "0" * 32)
    assert ingest(az, [ROW], path=wrong_dcr).status_code == 404
    assert ingest(az, [ROW], path=INGEST.replace(STREAM, "Custom-Other_CL")).status_code == 404
    assert len(az.rows) == 1


def test_az_client_credentials_token(az) -> None:
    """Auth: OAuth2 client credentials, `POST https://login.microsoftonline.com/{tenant}/oauth2/
    v2.0/token` with form `client_id`, `client_secret`, `grant_type=client_credentials`,
    `scope=https://monitor.azure.com//.default`; answer `{"access_token":..,"expires_in":..}`;
    then `Authorization: Bearer <token>`."""
    assert SCOPE == "https://monitor.azure.com//.default"
    answer = token_request(az)
    data = answer.json()
    assert answer.status_code == 200 and data["token_type"] == "Bearer"
    assert isinstance(data["access_token"], str) and isinstance(data["expires_in"], int)
    assert token_request(az, client_secret="wrong-secret").status_code == 401
    assert token_request(az, grant_type="password").status_code == 400
    assert token_request(az, scope="https://monitor.azure.us//.default").status_code == 400
    as_json = requests.post(f"{az.url}/{TENANT}/oauth2/v2.0/token", json={"client_id": CLIENT_ID})
    assert as_json.status_code == 400  # a form, not JSON
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer not-a-token"}):
        assert ingest(az, [ROW], headers=headers).status_code == 401
    assert az.rows == []


def test_az_role_403_until_it_propagates() -> None:
    """The app needs "Monitoring Metrics Publisher" on the DCR (403 until that propagates, up
    to 30 min)."""
    with SentinelSimulator(client_secret=AZ_SECRET, role_granted=False) as sim:
        assert ingest(sim, [ROW]).status_code == 403
        sim.grant_role(propagates_after_s=0.3)
        assert ingest(sim, [ROW]).status_code == 403
        time.sleep(0.35)
        assert ingest(sim, [ROW]).status_code == 204 and len(sim.rows) == 1


def test_az_body_is_a_json_array_of_objects(az) -> None:
    """Body: a JSON **array** of objects matching the stream's columns; `Content-Type:
    application/json`."""
    assert ingest(az, ROW).status_code == 400
    assert ingest(az, [ROW, "text"]).status_code == 400
    assert ingest(az, b"[{not json").status_code == 400
    assert ingest(az, [ROW], headers={"Content-Type": "text/plain"}).status_code == 400
    assert az.rows == []  # all or nothing: the good row of [ROW, "text"] is not kept


def test_az_gzip_is_optional(az) -> None:
    """`Content-Encoding: gzip` optional."""
    body = gzip.compress(json.dumps([ROW]).encode())
    assert ingest(az, body, headers={"Content-Encoding": "gzip"}).status_code == 204
    assert az.rows == [ROW]


def test_az_rows_need_time_generated(az) -> None:
    """The DCR's transformation must give each row a `TimeGenerated`."""
    assert ingest(az, [ROW, {"EventId": "b"}]).status_code == 204
    assert az.rows == [ROW] and az.dropped_rows == 1


def test_az_success_is_204_without_a_body(az) -> None:
    """Success: **204**, no body."""
    answer = ingest(az, [ROW])
    assert answer.status_code == 204 and answer.content == b""


def test_az_1_mb_per_call_compressed_or_not(az) -> None:
    """Limits: 1 MB per call (compressed or not: 413 above)."""
    row = {"TimeGenerated": STAMP, "Pad": "x" * 1100}
    many = [row] * 1000  # over 1 MiB as JSON, a few KB gzipped
    assert len(json.dumps(many)) > 1024 * 1024
    assert ingest(az, many).status_code == 413
    zipped = gzip.compress(json.dumps(many).encode())
    assert len(zipped) < 100_000
    assert ingest(az, zipped, headers={"Content-Encoding": "gzip"}).status_code == 413
    assert len(json.dumps(many[:850])) < 1024 * 1024
    assert ingest(az, many[:850]).status_code == 204
    assert len(az.rows) == 850


def test_az_field_values_over_64_kb_are_truncated(az) -> None:
    """field values over 64 KB truncated."""
    row = {"TimeGenerated": STAMP, "Big": "é" * 40_000, "Small": "s"}
    assert ingest(az, [row]).status_code == 204
    kept = az.rows[0]
    assert len(kept["Big"].encode()) <= FIELD_LIMIT_BYTES == 64 * 1024
    assert kept["Big"] == "é" * (FIELD_LIMIT_BYTES // 2) and kept["Small"] == "s"


def test_az_429_with_retry_after(az) -> None:
    """12,000 requests/min and 2 GB/min per DCR (429 with `Retry-After`)."""
    az.throttle(1, retry_after=7)
    answer = ingest(az, [ROW])
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    assert az.rows == [] and ingest(az, [ROW]).status_code == 204


def test_az_no_partial_success_and_no_dedup(az) -> None:
    """Partial success: none documented (all or nothing, **unconfirmed**). No dedup."""
    assert ingest(az, [ROW, 5]).status_code == 400 and az.rows == []
    assert ingest(az, [ROW]).status_code == ingest(az, [ROW]).status_code == 204
    assert az.rows == [ROW, ROW]


@pytest.mark.parametrize("status", [204, 400])
def test_az_empty_array_unconfirmed(status: int) -> None:
    """(not in the reference: what an empty array gets is undocumented; the simulator's
    `empty_array_status` switch covers both answers)"""
    with SentinelSimulator(client_secret=AZ_SECRET, empty_array_status=status) as sim:
        assert ingest(sim, []).status_code == status


# -- OpenTelemetry OTLP/HTTP logs (JSON) -------------------------------------------------------


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rx:
        yield rx


def export(*records: dict[str, Any]) -> dict[str, Any]:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "jc"}}]}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": list(records)}]}]}


RECORD = {
    "timeUnixNano": "1700000000123000000",
    "observedTimeUnixNano": "1700000000200000000",
    "severityNumber": 9,
    "severityText": "INFO",
    "body": {"stringValue": '{"id":"a"}'},
    "attributes": [{"key": "jc.id", "value": {"stringValue": "a"}}],
}


def otlp_post(
    rx: OtlpReceiver, body: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(rx.url + "/v1/logs", data=data, headers=sent)


def test_otlp_path_and_content_type(otlp) -> None:
    """`POST /v1/logs` (port 4318), `Content-Type: application/json`, body
    `ExportLogsServiceRequest`."""
    assert otlp_post(otlp, export(RECORD)).status_code == 200
    assert requests.post(otlp.url + "/v1/traces", json=export(RECORD)).status_code == 404
    answer = otlp_post(otlp, export(RECORD), headers={"Content-Type": "application/x-protobuf"})
    assert answer.status_code == 415
    assert len(otlp.received) == 1


def test_otlp_record_shape(otlp) -> None:
    """`{"resourceLogs":[{"resource":{"attributes":[..]},"scopeLogs":[{"scope":{..},
    "logRecords":[{"timeUnixNano":"..","observedTimeUnixNano":"..","severityNumber":9,
    "severityText":"INFO","body":{"stringValue":".."} or {"kvlistValue":..},"attributes":[{"key":..,
    "value":{"stringValue":..}}]}]}]}]}`."""
    kvlist = {**RECORD, "body": {"kvlistValue": {"values": []}}}
    body = export(RECORD, kvlist)
    body["resourceLogs"][0]["scopeLogs"][0]["scope"] = {"name": "di2siem"}
    assert otlp_post(otlp, body).status_code == 200
    assert len(otlp.received) == 2
    assert otlp.received[0]["resource"] == body["resourceLogs"][0]["resource"]["attributes"]


@pytest.mark.parametrize(
    "bad",
    [
        {"severityNumber": "SEVERITY_NUMBER_INFO"},  # an enum as its name
        {"timeUnixNano": "17e17"},  # not a decimal string
        {"body": {"stringValue": 5}},
        {"attributes": [{"key": "k", "value": "v"}]},
    ],
)
def test_otlp_json_mapping_is_strict(otlp, bad: dict[str, Any]) -> None:
    """lowerCamelCase keys, enums as integers, 64-bit integers as decimal strings."""
    answer = otlp_post(otlp, export({**RECORD, **bad}))
    assert answer.status_code == 400 and otlp.received == []


def test_otlp_unknown_fields_are_ignored(otlp) -> None:
    """OTLP/JSON receivers MUST ignore message fields with unknown names and MUST unmarshal
    the message as if the unknown field was not present."""
    body = export({**RECORD, "futureField": {"x": 1}})
    body["later"] = True
    answer = otlp_post(otlp, body)
    assert answer.status_code == 200 and len(otlp.received) == 1
    assert "futureField" not in otlp.received[0]  # unmarshalled as if it were not there
    assert otlp.stats["unknown_fields"] == 2
    otlp.strict_fields = True  # our own switch: refuse them instead
    assert otlp_post(otlp, body).status_code == 400 and len(otlp.received) == 1


def test_otlp_gzip_allowed(otlp) -> None:
    """gzip allowed."""
    body = gzip.compress(json.dumps(export(RECORD)).encode())
    assert otlp_post(otlp, body, headers={"Content-Encoding": "gzip"}).status_code == 200
    assert len(otlp.received) == 1


def test_otlp_success_is_200_with_an_empty_object(otlp) -> None:
    """Success: 200 with `{}`."""
    answer = otlp_post(otlp, export(RECORD))
    assert answer.status_code == 200 and answer.json() == {}


def test_otlp_partial_success() -> None:
    """**Partial success**: 200 with `{"partialSuccess":{"rejectedLogRecords":"N",
    "errorMessage":".."}}`: the client must not retry that request."""
    with OtlpReceiver(reject_containing="refuse-me") as rx:
        refused = {**RECORD, "body": {"stringValue": "refuse-me"}}
        answer = otlp_post(rx, export(RECORD, refused, refused))
        partial = answer.json()["partialSuccess"]
        assert answer.status_code == 200 and partial["rejectedLogRecords"] == "2"
        assert isinstance(partial["errorMessage"], str) and partial["errorMessage"]
        assert len(rx.received) == 1  # the others were kept: a retry would double them


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_otlp_retryable_answers_carry_retry_after(otlp, status: int) -> None:
    """Retryable: 429, 502, 503, 504 (honour `Retry-After`)."""
    otlp.throttle(1, status=status, retry_after=2)
    answer = otlp_post(otlp, export(RECORD))
    assert answer.status_code == status and answer.headers["Retry-After"] == "2"
    assert otlp.received == []
    assert otlp_post(otlp, export(RECORD)).status_code == 200


def test_otlp_400_and_413_are_final(otlp) -> None:
    """400 and 413 are final."""
    assert otlp_post(otlp, b"{not json").status_code == 400
    with OtlpReceiver(max_body_bytes=2000) as small:
        big = export(*[RECORD] * 20)
        assert otlp_post(small, big).status_code == 413
        assert otlp_post(small, big).status_code == 413  # the same request, the same answer


def test_otlp_body_cap_after_decompression() -> None:
    """Servers cap bodies (recommended 20 MiB, after decompression)."""
    assert OTLP_CAP == 20 * 1024 * 1024
    with OtlpReceiver(max_body_bytes=5000) as small:
        big = json.dumps(export(*[RECORD] * 40)).encode()
        zipped = gzip.compress(big)
        assert len(zipped) < 5000 < len(big)
        answer = otlp_post(small, zipped, headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 413 and small.received == []


# -- syslog over TLS ---------------------------------------------------------------------------

GOOD = b'<165>1 2026-01-01T00:00:00.123456Z host app 42 ID47 [x@1 k="a\\"b\\\\c\\]"] {"id":"a"}'


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls-spec"))


def tls_receiver(tls: TlsFiles, **kwargs: Any) -> SyslogReceiver:
    return SyslogReceiver(certfile=tls.server_cert, keyfile=tls.server_key, **kwargs)


def connect(rx: SyslogReceiver, tls: TlsFiles | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", rx.port), timeout=5)
    if tls is None:
        return sock
    context = ssl.create_default_context(cafile=tls.ca)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def octets(*messages: bytes) -> bytes:
    return b"".join(b"%d %s" % (len(m), m) for m in messages)


def wait_for(predicate, limit_s: float = 5.0) -> None:
    ends = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < ends:
        time.sleep(0.01)
    assert predicate()


def send(rx: SyslogReceiver, tls: TlsFiles | None, data: bytes) -> socket.socket:
    sock = connect(rx, tls)
    sock.sendall(data)
    return sock


@contextmanager
def politely(sock: socket.socket) -> Iterator[socket.socket]:
    """The connection closed as RFC 5425 section 4.4 asks: close_notify first over TLS."""
    try:
        yield sock
    finally:
        if isinstance(sock, ssl.SSLSocket):
            with suppress(OSError, ssl.SSLError):
                sock = sock.unwrap()
        sock.close()


def test_syslog_message_fields(tls) -> None:
    """Message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`; PRI =
    facility x 8 + severity; TIMESTAMP RFC 3339 (<= 6 fractional digits); `-` for an empty
    field ... in SD values `"`, `\\` and `]` are escaped with `\\`. The MSG is the event's
    JSON."""
    with tls_receiver(tls) as rx, politely(send(rx, tls, octets(GOOD, b"<0>1 - - - - - -"))):
        wait_for(lambda: len(rx.received) == 2)
    first, empty = rx.received
    assert (first.facility, first.severity) == (20, 5) and first.pri == 20 * 8 + 5
    assert (first.hostname, first.app_name, first.procid, first.msgid) == (
        "host",
        "app",
        "42",
        "ID47",
    )
    assert first.structured_data == '[x@1 k="a\\"b\\\\c\\]"]' and json.loads(first.msg) == {
        "id": "a"
    }
    assert (empty.timestamp, empty.hostname, empty.msgid, empty.msg) == (None, None, None, None)
    assert rx.errors == []


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("TIMESTAMP", b"<13>1 2026-01-01T00:00:00.1234567Z - - - - -"),
        ("HOSTNAME", b"<13>1 - " + b"h" * 256 + b" - - - -"),
        ("APP-NAME", b"<13>1 - - " + b"a" * 49 + b" - - -"),
        ("PROCID", b"<13>1 - - - " + b"p" * 129 + b" - -"),
        ("MSGID", b"<13>1 - - - - " + b"m" * 33 + b" -"),
        ("MSGID", "<13>1 - - - - mé -".encode()),
        ("PRI", b"<192>1 - - - - - -"),
    ],
)
def test_syslog_header_limits(tls, field: str, message: bytes) -> None:
    """HOSTNAME <= 255, APP-NAME <= 48, PROCID <= 128, MSGID <= 32 printable US-ASCII;
    TIMESTAMP <= 6 fractional digits; PRI = facility x 8 + severity (at most 23 x 8 + 7)."""
    at_limit = message.replace(b"h" * 256, b"h" * 255).replace(b"a" * 49, b"a" * 48)
    with tls_receiver(tls) as rx, send(rx, tls, octets(message)):
        wait_for(lambda: bool(rx.errors))
        assert field in rx.errors[0] and rx.received == []
    if at_limit != message:
        with tls_receiver(tls) as rx, send(rx, tls, octets(at_limit)):
            wait_for(lambda: len(rx.received) == 1)


def test_syslog_octet_counting_over_tls(tls) -> None:
    """Framing over TLS (port 6514): octet counting, `LEN SP MSG` (RFC 5425 section 4.3)."""
    with tls_receiver(tls) as rx, send(rx, tls, octets(GOOD, GOOD, GOOD)):
        wait_for(lambda: len(rx.received) == 3)
        assert rx.handshakes == 1 and rx.errors == []
    with tls_receiver(tls) as rx, send(rx, tls, GOOD + b"\n"):
        wait_for(lambda: bool(rx.errors))  # an LF frame is not octet counting
        assert rx.received == [] and "MSG-LEN" in rx.errors[0]


def test_syslog_lf_framing(tls) -> None:
    """some receivers take LF-terminated frames instead (RFC 6587 non-transparent framing)."""
    with tls_receiver(tls, framing="lf") as rx, send(rx, tls, GOOD + b"\n" + GOOD + b"\n"):
        wait_for(lambda: len(rx.received) == 2)
        assert rx.errors == []


@pytest.mark.parametrize("limit", [None, 2048])
def test_syslog_message_size_unconfirmed(tls, limit: int | None) -> None:
    """Receivers must accept 2,048 octets and should accept 8,192 (**unconfirmed** exact
    wording)."""
    head = b"<13>1 - - - - - - "
    kwargs = {"max_frame": limit} if limit else {}

    def sized(n: int) -> bytes:
        return head + b"x" * (n - len(head))

    with tls_receiver(tls, **kwargs) as rx, send(rx, tls, octets(sized(2048), sized(8192))):
        wait_for(lambda: len(rx.received) + len(rx.errors) == 2 if limit else len(rx.received) == 2)
        assert len(rx.received[0].raw) == 2048
        assert (rx.errors != []) == (limit is not None)


def test_syslog_no_acknowledgement_and_no_error_answer(tls) -> None:
    """No acknowledgement and no error answer: a message counts as sent when written."""
    with tls_receiver(tls) as rx:
        good = send(rx, tls, octets(GOOD))
        wait_for(lambda: len(rx.received) == 1)
        good.settimeout(0.2)
        with pytest.raises((TimeoutError, socket.timeout)):
            good.recv(1)  # nothing comes back for a message taken
        bad = send(rx, tls, octets(b"<999>1 - - - - - -"))
        wait_for(lambda: bool(rx.errors))
        bad.settimeout(2)
        try:
            answer = bad.recv(100)
        except (ssl.SSLError, OSError):
            answer = b""
        assert answer == b""  # a refused frame: the connection ends, no answer
        good.close()
        bad.close()


def test_syslog_unsent_queue_tells_what_the_peer_acknowledged() -> None:
    """What a shipper can still know: the TCP peer acknowledged every byte (the socket's unsent
    queue, `SIOCOUTQ`, is empty) before the connection dropped."""

    def outq(sock: socket.socket) -> int:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]

    with SyslogReceiver(rcvbuf=4096) as rx:
        rx.paused.set()
        sock = socket.create_connection(("127.0.0.1", rx.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        data = octets(*[GOOD] * 3000)
        sock.setblocking(False)
        sent = 0
        try:
            while sent < len(data):
                sent += sock.send(data[sent : sent + 65536])
        except BlockingIOError:
            pass
        time.sleep(0.1)
        assert outq(sock) > 0  # the paused receiver did not acknowledge it all
        rx.paused.clear()
        sock.setblocking(True)
        sock.sendall(data[sent:])
        wait_for(lambda: outq(sock) == 0)
        wait_for(lambda: len(rx.received) == 3000)
        sock.close()
