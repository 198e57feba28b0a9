"""Elasticsearch (and OpenSearch) ``_bulk`` into a data stream: one ``create`` action per
event, its ``_id`` the event's identity (its id, else the digest of its exact text: the key
engine/classify.py gives it), its document the event in di2siem's usual shape with
``@timestamp`` = the event time (RFC 3339, ms, UTC).

Data streams take only ``create``, and ``create`` with a deterministic ``_id`` makes a resend
harmless: a document already there answers 409 ``version_conflict_engine_exception``, which
counts as delivered, so a batch resent after a kill -9 or a lost answer is in the index once.
The answer is 200 even when items fail; it is read item by item (delivery.py _settle_items):
201 and 409 taken, 429 sent again alone, any other item error refuses that event for good."""

from __future__ import annotations

import hashlib
import json

from ..batching import Framing
from ..config import SiemConfig
from ..shaping import encode, encode_json
from ..timeutil import format_ms, now_ms
from ..transport.body import MAX_ANSWER_BYTES, body_excerpt
from .base import SPLIT, Intake, Outcome, Verdict, refused

TAKEN = frozenset((200, 201, 409))  # 409: a document with this _id is there already
RETRIED_ITEM = 429
# A _bulk answer has one item per action (a real cluster's: ~250 bytes, more with an error)
ANSWER_BYTES_PER_ITEM = 1024
TIMESTAMP = '"@timestamp"'
DIGEST_PREFIX = "blake2b:"  # as engine/classify.py names id-less events


def _identity(event: dict) -> str:
    """The event's identity when the caller did not give it (as engine/classify.event_key,
    over the event's JSON text)."""
    event_id = event.get("id")
    if type(event_id) is str and event_id:
        return event_id
    if type(event_id) is int:
        return str(event_id)
    text = encode_json(event)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16)
    return DIGEST_PREFIX + digest.hexdigest()


class BulkCreateEnvelope:
    def head(self, event: dict, key: str | None = None) -> str:
        return '{"create":{"_id":' + encode(key or _identity(event)) + "}}\n"

    def wrap(self, text: str, ts_ms: int | None, head: str) -> str:
        # an event without a readable time gets the time di2siem read it: a data stream
        # refuses a document without @timestamp
        stamp = '{"@timestamp":"' + format_ms(ts_ms if ts_ms is not None else now_ms()) + '"'
        if TIMESTAMP in text:
            text = _without_timestamp(text)
        return head + stamp + ("}" if text == "{}" else "," + text[1:])


def _without_timestamp(text: str) -> str:
    """The document without a top-level @timestamp of its own (a custom field, say): ours
    replaces it (Elasticsearch refuses a duplicate key)."""
    document = json.loads(text)
    if not isinstance(document, dict) or "@timestamp" not in document:
        return text
    del document["@timestamp"]
    return encode_json(document)


def _item_error(answer: dict) -> str:
    error = answer.get("error")
    if isinstance(error, dict):
        kind = error.get("type") or "error"
        reason = str(error.get("reason") or "").replace("\n", " ")[:300]
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            reason += f" (caused by: {str(caused['reason']).replace(chr(10), ' ')[:200]})"
        return f"{kind}: {reason}" if reason else str(kind)
    return str(error or "no reason given")[:300]


class Elasticsearch(Intake):
    name = "elasticsearch"
    options = ("url", "data_stream", "api_key", "username", "password", "headers")
    framing = Framing(b"", b"\n", b"\n")  # action and document lines; the body ends with \n
    envelope = BulkCreateEnvelope()

    def __init__(self, cfg: SiemConfig) -> None:
        super().__init__(cfg)
        self.data_stream = cfg.options.data_stream
        self.base = cfg.url.rstrip("/")

    def answer_limit(self) -> int:
        return MAX_ANSWER_BYTES + ANSWER_BYTES_PER_ITEM * self.cfg.batch_size

    def post_url(self) -> str:
        return f"{self.base}/{self.data_stream}/_bulk"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/x-ndjson"}
        if self.cfg.api_key:
            headers["Authorization"] = f"ApiKey {self.cfg.api_key}"
        elif self.cfg.options.basic:
            headers["Authorization"] = f"Basic {self.cfg.options.basic}"
        headers.update(self.cfg.headers)
        return headers

    def credential_keys(self) -> str:
        if self.cfg.api_key:
            return "siem.api_key (the API key's encoded value)"
        if self.cfg.options.username:
            return "siem.username/siem.password"
        return " / ".join(f"siem.headers.{name}" for name, _ in self.cfg.headers) or (
            "siem.api_key or siem.username/siem.password"
        )

    # -- check: may these credentials create documents in the data stream? ---------------
    def probe_url(self) -> str:
        return f"{self.base}/_security/user/_has_privileges"

    def probe_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def probe_body(self) -> bytes:
        asked = {"index": [{"names": [self.data_stream], "privileges": ["create_doc"]}]}
        return json.dumps(asked).encode()

    def probe_accepts(self, status: int) -> bool:
        """200: the answer says (probe_refusal); 400/404/405 after authenticating: a cluster
        without the security API (OpenSearch, or security off), which proves the URL only."""
        return status == 200 or status in (400, 404, 405)

    def probe_refusal(self, response) -> str | None:
        if response.status_code != 200:
            return None
        try:
            answer = json.loads(bytes(response.content))
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "has_all_requested" not in answer:
            return "SIEM answered 200 but not as Elasticsearch's _has_privileges: check siem.url"
        if answer["has_all_requested"] is True:
            return None
        return (
            f"SIEM says {self.credential_keys()} may not create documents in data stream "
            f"{self.data_stream} (create_doc): grant create_doc on it, or check "
            "siem.data_stream"
        )

    # -- answers ---------------------------------------------------------------------------
    def classify(self, status: int, response) -> Outcome:
        if status == 200:
            return self._items(response)
        if status == 413:
            return SPLIT
        return self.refusal(status, response)

    def refusal(self, status: int, response) -> Outcome:
        """As every intake reads them (401/403 name our credential keys), but 400/404/405 name
        the cluster's address and the data stream."""
        if status not in (400, 404, 405):
            return super().refusal(status, response)
        detail = body_excerpt(response)
        suffix = f" ({detail})" if detail else ""
        return refused(
            f"SIEM answered {status}: check siem.url (the cluster's address, e.g. "
            f"https://es.example.com:9200) and siem.data_stream{suffix}"
        )

    def _items(self, response) -> Outcome:
        try:
            answer = json.loads(bytes(response.content))
        except ValueError:
            answer = None
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            return refused(
                "SIEM answered 200 without the _bulk items: the batch is not counted as "
                "delivered (the next run sends it again); check siem.url"
            )
        again: list[int] = []
        refusals: list[tuple[int, str]] = []
        why_again = ""
        for index, item in enumerate(items):
            result = next(iter(item.values()), None) if isinstance(item, dict) else None
            status = result.get("status") if isinstance(result, dict) else None
            if status in TAKEN:
                continue
            if status == RETRIED_ITEM:
                again.append(index)
                why_again = why_again or _item_error(result)
                continue
            if isinstance(result, dict):
                refusals.append((index, f"item status {status}, {_item_error(result)}"))
            else:
                refusals.append((index, f"an item answer without a status ({item!r:.100})"))
        return Outcome(
            Verdict.ITEMS,
            reason=f"SIEM answered 429 for {len(again)} item(s) ({why_again})",
            items_answered=len(items),
            retry_items=tuple(again),
            refused_items=tuple(refusals),
        )
