"""Splunk HTTP Event Collector: ``/services/collector/event`` with ``Authorization: Splunk
<token>``, one ``{"time": <epoch seconds.ms>, "event": <the usual event>, ...}`` per event,
the objects concatenated (a newline between).

HEC answers ``{"text": ..., "code": N}``: 0 is success; 503 code 9 (busy) is retried; 400
codes 6/7/12/13 name the refused event by its position (``invalid-event-number``), which the
run's error turns into the event's id; 401/403 name ``siem.token``. With ``siem.ack`` every
request carries this sink's channel (a GUID for the run) and a 200 carries an ``ackId``: the
batch counts as delivered only once ``/services/collector/ack`` says so (acks.py)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit, urlunsplit

from ..batching import Framing
from ..config import SiemConfig
from ..config.splunk_hec import event_url
from ..errors import FatalError, RetryableError, Side
from ..shaping import encode
from ..transport.body import body_excerpt
from ..transport.retry import parse_retry_after
from .base import DELIVERED, SPLIT, AckSettings, Intake, Outcome, Verdict, refused

NAMED_EVENT_CODES = (6, 7, 12, 13)
ACK_PATH = "/services/collector/ack"
CHANNEL = "X-Splunk-Request-Channel"
LEDGER = "splunk-hec-acks.json"


def answer_of(response) -> dict:
    try:
        data = json.loads(bytes(response.content) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def beside(url: str, path: str) -> str:
    """``path`` on the same host, below the prefix in front of ``/services/collector`` (a
    proxy's) if any."""
    parts = urlsplit(url)
    prefix, found, _ = parts.path.partition("/services/collector")
    return urlunsplit(parts._replace(path=(prefix if found else "") + path, query=""))


class HecEnvelope:
    def __init__(self, cfg: SiemConfig) -> None:
        o = cfg.options
        meta = [("sourcetype", o.sourcetype)]
        meta += [(k, v) for k, v in (("index", o.index), ("source", o.source), ("host", o.host))]
        self.tail = "".join(f',"{k}":{encode(v)}' for k, v in meta if v) + "}"

    def head(self, event: dict, key: str | None = None) -> None:
        return None

    def wrap(self, text: str, ts_ms: int | None, head: None) -> str:
        when = ""
        if ts_ms is not None and ts_ms >= 0:
            when = f'"time":{ts_ms // 1000}.{ts_ms % 1000:03d},'
        return "{" + when + '"event":' + text + self.tail


class SplunkHec(Intake):
    name = "splunk_hec"
    options = (
        "url",
        "token",
        "index",
        "source",
        "sourcetype",
        "host",
        "ack",
        "ack_timeout_seconds",
        "ack_poll_seconds",
        "max_unacknowledged_batches",
    )
    framing = Framing(b"", b"\n", b"\n")

    def __init__(self, cfg: SiemConfig) -> None:
        super().__init__(cfg)
        self.envelope = HecEnvelope(cfg)
        self.url = event_url(cfg.url)
        self.channel = str(uuid.uuid4()) if cfg.options.ack else None
        self.ack_url = beside(self.url, ACK_PATH)

    def post_url(self) -> str:
        return self.url

    def headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Splunk {self.cfg.options.token}",
        }
        if self.channel is not None:
            headers[CHANNEL] = self.channel
        headers.update(self.cfg.headers)
        return headers

    def credential_keys(self) -> str:
        return "siem.token (the HEC token: enabled, and allowed to write to siem.index)"

    def acknowledgement(self) -> AckSettings | None:
        o = self.cfg.options
        if self.channel is None:
            return None
        return AckSettings(
            self.channel,
            o.ack_timeout_seconds,
            o.ack_poll_seconds,
            o.max_unacknowledged_batches,
            LEDGER,
        )

    def ack_query(self, channel: str, ack_ids: list[int]) -> tuple[str, bytes, dict[str, str]]:
        return self.ack_url, json.dumps({"acks": ack_ids}).encode(), {CHANNEL: channel}

    def ack_answer(self, status: int, response) -> dict[int, bool]:
        if status == 200:
            acks = answer_of(response).get("acks")
            if isinstance(acks, dict):
                return {int(k): v is True for k, v in acks.items() if str(k).isdigit()}
            raise RetryableError("SIEM answered the ack query without acks", side=Side.SIEM)
        outcome = self.refusal(status, response)
        if outcome.verdict is Verdict.RETRY:
            raise RetryableError(outcome.reason, outcome.retry_after, side=Side.SIEM)
        raise FatalError(f"{outcome.reason} (asking for acknowledgements)", side=Side.SIEM)

    def probe_body(self) -> bytes:
        return b""  # HEC answers 400 code 5 "No data" after checking the token

    def classify(self, status: int, response) -> Outcome:
        if status == 200:
            answer = answer_of(response)
            if answer.get("code", 0) != 0:
                return refused(f"SIEM answered 200 with {body_excerpt(response)}")
            ack_id = answer.get("ackId")
            if self.channel is not None:
                if type(ack_id) is not int:
                    return refused(
                        "SIEM answered without an ackId although siem.ack is true: enable "
                        "indexer acknowledgement on the HEC token, or set siem.ack to false"
                    )
                return Outcome(Verdict.DELIVERED, ack_id=ack_id)
            return DELIVERED
        if status == 413:
            return SPLIT
        return self.refusal(status, response)

    def refusal(self, status: int, response) -> Outcome:
        answer = answer_of(response)
        code = answer.get("code")
        text = str(answer.get("text") or body_excerpt(response))[:200]
        said = f"SIEM answered {status} code {code} ({text})"
        if status in (401, 403):
            return refused(f"{said}: check {self.credential_keys()}")
        if status in (503, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return Outcome(Verdict.RETRY, retry_after, said)
        if status == 400 and code in NAMED_EVENT_CODES:
            index = answer.get("invalid-event-number")
            where = " ({event})" if type(index) is int else ""
            return Outcome(
                Verdict.REFUSED,
                reason=f"{said}: HEC refused an event{where}; nothing after it was recorded",
                record_index=index if type(index) is int else None,
            )
        if status == 400 and code in (10, 11, 14):
            return refused(f"{said}: check siem.ack against the token's indexer acknowledgement")
        if status in (400, 404, 405):
            return refused(f"{said}: check siem.url (the HEC base URL, port 8088 by default)")
        return refused(said)

    def probe_accepts(self, status: int) -> bool:
        return status == 200 or status == 400
