"""A Splunk HTTP Event Collector on loopback, faithful to shared/reference/intakes.md (Splunk's
"HTTP Event Collector REST API endpoints", "Format events for HEC", "About HEC indexer
acknowledgment" and the HEC reply-code table).

- ``POST /services/collector/event`` and ``/services/collector``: JSON objects concatenated
  (whitespace between allowed), each with ``event`` (required, not blank), optional ``time``,
  ``host``, ``source``, ``sourcetype``, ``index``, ``fields``. Success ``{"text":"Success",
  "code":0}``; 400 code 5 no data, 6 invalid data format, 7 incorrect index, 12 event field
  required, 13 event field blank, each with ``invalid-event-number`` (0-based) where an event
  is named; the events before the bad one are indexed (``index_before_invalid``, the widely
  reported behaviour; switch it off for the other answer); 413 over ``max_content_length``;
  503 code 9 while ``busy`` > 0 (with ``Retry-After: busy_retry_after`` when that is set:
  whether HEC sends one is unconfirmed); 500 code 8 while ``failing`` > 0. gzip bodies
  (unconfirmed): decompressed when ``accept_gzip``, else 400 code 6 as unparsable data.
- Auth ``Authorization: Splunk <token>``: no header 401 code 2, another scheme 401 code 3,
  unknown token 403 code 4, disabled token 403 code 1.
- Indexer acknowledgement (a token created with ``ack=True``): every request needs a channel
  GUID (``X-Splunk-Request-Channel`` or ``?channel=``): missing 400 code 10, not a GUID 400
  code 11; a 200 adds ``ackId`` (per channel, 0, 1, ...). ``POST /services/collector/ack``
  ``{"acks":[...]}`` answers ``{"acks":{"0":true,...}}``: true once, then forgotten (false
  again, like an id never issued). Switches: ``ack_delay_s`` (true only that long after the
  request), ``lose_acks`` (the next N requests' data is lost: its ack never turns true and its
  events are never indexed). A token without ack: ``/ack`` is 400 code 14.
- ``GET /services/collector/health``: 200 code 17, or 503 code 18 while ``unhealthy``.
- Control (not HEC's): ``POST /_sim/keys {"token": "<new>"}`` makes that the only token
  accepted from now on, with the same acknowledgement setting (a token rotation: the old one
  is answered 403 code 4); ``POST /_sim/reset`` restores the starting token.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from .plumbing.base import BaseSimulator
from .plumbing.wire import Request, Response

EVENT_PATHS = ("/services/collector/event", "/services/collector")
ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"
CHANNEL = "X-Splunk-Request-Channel"
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024
ENVELOPE_KEYS = frozenset(("event", "time", "host", "source", "sourcetype", "index", "fields"))


def hec(status: int, code: int, text: str, **extra: Any) -> Response:
    return Response.json(status, {"text": text, "code": code, **extra})


def objects_of(body: bytes) -> list[Any]:
    """The concatenated JSON values of a HEC body; a part that does not parse is returned as
    the ValueError it raised (its position is the event number HEC names)."""
    text = body.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    out: list[Any] = []
    at = 0
    while True:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        if at >= len(text):
            return out
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError as exc:
            out.append(exc)
            return out
        out.append(value)


class Channel:
    def __init__(self) -> None:
        self.next_id = 0
        self.pending: dict[int, float | None] = {}  # ack id -> when it turns true (None: never)


class SplunkHecSimulator(BaseSimulator):
    name = "splunk_hec"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "00000000-0000-4000-8000-000000000000",
        ack: bool = False,
        max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
        indexes: tuple[str, ...] = ("main",),
    ) -> None:
        super().__init__(host, port)
        self.tokens: dict[str, dict[str, bool]] = {token: {"ack": ack, "disabled": False}}
        self._starting_tokens = {name: dict(settings) for name, settings in self.tokens.items()}
        self.max_content_length = self.api_body_limit = max_content_length
        self.indexes = indexes
        self.index_before_invalid = True
        self.busy = 0  # the next N event requests are answered 503 code 9
        self.busy_retry_after: int | None = None
        self.failing = 0  # the next N event requests are answered 500 code 8
        self.accept_gzip = True
        self.unhealthy = False
        self.ack_delay_s = 0.0
        self.lose_acks = 0
        self._lock = threading.Lock()
        self.channels: dict[str, Channel] = {}
        self.received: list[dict[str, Any]] = []  # indexed envelopes, in order
        self.ack_queries = 0

    def __enter__(self) -> SplunkHecSimulator:
        return self.start()  # type: ignore[return-value]

    def events(self) -> list[Any]:
        with self._lock:
            return [envelope["event"] for envelope in self.received]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.received.clear()
            self.channels.clear()
            self.ack_queries = 0
            self.tokens = {name: dict(settings) for name, settings in self._starting_tokens.items()}

    def extra_control(self, request: Request) -> Response:
        if (request.method, request.path) == ("POST", "/_sim/keys"):
            return self._control_keys(request)
        return super().extra_control(request)

    def _control_keys(self, request: Request) -> Response:
        """{"token": ...}: the only token accepted from now on. The answer never shows it."""
        try:
            data = request.json()
        except ValueError as exc:
            return Response.message(400, str(exc))
        if not isinstance(data, dict) or set(data) != {"token"}:
            return Response.message(400, 'expected {"token": "<the token accepted from now on>"}')
        if not isinstance(data["token"], str) or not data["token"].strip():
            return Response.message(400, "token must be a non-empty string")
        with self._lock:
            ack = any(settings["ack"] for settings in self.tokens.values())
            self.tokens = {data["token"].strip(): {"ack": ack, "disabled": False}}
        return Response.json(200, {"rotated": ["token"]})

    # -- the API ----------------------------------------------------------------------------------
    def handle_api(self, request: Request) -> Response:
        if request.path == HEALTH_PATH and request.method == "GET":
            if self.unhealthy:
                return hec(503, 18, "HEC is unhealthy, queues are full")
            return hec(200, 17, "HEC is healthy")
        if request.path not in (*EVENT_PATHS, ACK_PATH):
            return hec(404, 404, f"The requested URL was not found on this server: {request.path}")
        if request.method != "POST":
            return hec(405, 405, "Method Not Allowed")
        token, refusal = self._auth(request)
        if refusal is not None:
            return refusal
        settings = self.tokens[token]
        channel, refusal = self._channel(request, settings["ack"])
        if refusal is not None:
            return refusal
        if request.path == ACK_PATH:
            return self._ack(request, settings["ack"], channel)
        if request.oversize is not None:
            return hec(413, 413, f"Content-Length too large (maximum is {self.max_content_length})")
        refusal = self._unavailable()
        if refusal is not None:
            return refusal
        if not self.accept_gzip and (request.header("Content-Encoding") or "") == "gzip":
            return hec(400, 6, "Invalid data format", **{"invalid-event-number": 0})
        return self._events(request, channel if settings["ack"] else None)

    def _unavailable(self) -> Response | None:
        with self._lock:
            if self.failing > 0:
                self.failing -= 1
                return hec(500, 8, "Internal server error")
            if self.busy > 0:
                self.busy -= 1
                busy = hec(503, 9, "Server is busy")
                if self.busy_retry_after is not None:
                    busy.headers["Retry-After"] = str(self.busy_retry_after)
                return busy
        return None

    def _auth(self, request: Request) -> tuple[str, Response | None]:
        value = request.header("Authorization")
        if not value:
            return "", hec(401, 2, "Token is required")
        scheme, _, token = value.partition(" ")
        if scheme != "Splunk":
            return "", hec(401, 3, "Invalid authorization")
        settings = self.tokens.get(token.strip())
        if settings is None:
            return "", hec(403, 4, "Invalid token")
        if settings["disabled"]:
            return "", hec(403, 1, "Token disabled")
        return token.strip(), None

    def _channel(self, request: Request, ack: bool) -> tuple[str | None, Response | None]:
        channel = request.header(CHANNEL) or request.query.get("channel")
        if not ack and request.path != ACK_PATH:
            return channel, None
        if not channel:
            return None, hec(400, 10, "Data channel is missing")
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, hec(400, 11, "Invalid data channel")
        return channel, None

    def _events(self, request: Request, channel: str | None) -> Response:
        objects = objects_of(request.body)
        if not objects:
            return hec(400, 5, "No data")
        good: list[dict[str, Any]] = []
        bad: Response | None = None
        for number, value in enumerate(objects):
            bad = self._invalid(value, number)
            if bad is not None:
                break
            good.append(value)
        if bad is not None and not self.index_before_invalid:
            good = []
        ack_id = self._index(good, channel)
        if bad is not None:
            return bad
        if ack_id is None:
            return hec(200, 0, "Success")
        return hec(200, 0, "Success", ackId=ack_id)

    def _invalid(self, value: Any, number: int) -> Response | None:
        named = {"invalid-event-number": number}
        if isinstance(value, ValueError) or not isinstance(value, dict):
            return hec(400, 6, "Invalid data format", **named)
        if "event" not in value:
            return hec(400, 12, "Event field is required", **named)
        if value["event"] in ("", None, {}):
            return hec(400, 13, "Event field cannot be blank", **named)
        index = value.get("index")
        if index is not None and index not in self.indexes:
            return hec(400, 7, "Incorrect index", **named)
        return None

    def _index(self, envelopes: list[dict[str, Any]], channel: str | None) -> int | None:
        """Index the events (unless lost); the ack id of the request on a channel with ack."""
        with self._lock:
            lost = self.lose_acks > 0 and channel is not None
            if lost:
                self.lose_acks -= 1
            else:
                if self.keep_records:
                    self.received.extend(envelopes)
                self.record_out(envelopes)
                self.stats_counter.incr("indexed_events", len(envelopes))
            if channel is None:
                return None
            state = self.channels.setdefault(channel, Channel())
            ack_id = state.next_id
            state.next_id += 1
            state.pending[ack_id] = None if lost else time.monotonic() + self.ack_delay_s
            return ack_id

    def _ack(self, request: Request, ack: bool, channel: str | None) -> Response:
        if not ack:
            return hec(400, 14, "ACK is disabled")
        try:
            asked = request.json().get("acks")
            ids = [int(i) for i in asked]
        except (ValueError, TypeError, AttributeError):
            return hec(400, 6, "Invalid data format")
        now = time.monotonic()
        answer: dict[str, bool] = {}
        with self._lock:
            self.ack_queries += 1
            state = self.channels.get(channel or "")
            for ack_id in ids:
                ready = state.pending.get(ack_id) if state else None
                done = ready is not None and ready <= now
                if done and state is not None:
                    del state.pending[ack_id]  # reported true once, then forgotten
                answer[str(ack_id)] = done
        return Response.json(200, {"acks": answer})
