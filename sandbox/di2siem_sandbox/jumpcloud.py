"""JumpCloud Directory Insights API simulator (a real HTTP server on loopback).

Faithful to shared/reference/jumpcloud-di-api.md: POST /insights/directory/v1/events,
/events/count, /events/distinct with `x-api-key`, `x-org-id` (several in one request mix those
orgs' events), `x-provider-id` (the MSP portal's own events), body validation (an invalid
`limit` or `sort` silently falls back to 1000 / ASC, an unknown service is a 400 listing the
supported values), sorting by (timestamp ms, opaque tie-breaker), `search_after` paging with
an opaque tie-breaker that is not the event id, the X-* headers, and 402 for an org whose
plan lacks Directory Insights. Service accounts: POST /oauth2/token (HTTP Basic client
id:secret, client_credentials) issues Bearer tokens that expire after `token_ttl_s`.
Control API under /_sim/.
Events are kept sorted with their JSON pre-serialised, so a page is one bytes join.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import heapq
import json
import random
import secrets
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ._common import BaseSimulator, Request, Response
from .events import (
    DEFAULT_ORG_ID,
    QUERY_SERVICES,
    TimeLike,
    burst_events,
    iter_timed_events,
    make_event,
    make_id,
    now_ms,
    parse_ts,
    to_epoch_ms,
)

API_PREFIX = "/insights/directory/v1"
TOKEN_PATH = "/oauth2/token"
DEFAULT_API_KEY = "sandbox-jumpcloud-key"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
_DAY_MS = 86_400_000
_SERVICES_TEXT = ", ".join(QUERY_SERVICES)
INSIGHTS_DISABLED = "Directory Insights is not enabled for your organization"
PROVIDER_PREFIX = "provider:"  # store key of an MSP provider's own events
_TIEBREAK_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_ENCODER = json.JSONEncoder(separators=(",", ":"))

Key = tuple[int, str]  # (epoch ms, tie-breaker): the sort order and the search_after tuple
Entry = tuple[Key, bytes, str]  # key, serialised event, service


class QueryError(ValueError):
    """A 400 answer."""


@dataclass(frozen=True)
class Query:
    services: frozenset[str] | None  # None: "all"
    start_ms: int
    end_ms: int | None
    limit: int
    sort: str
    search_after: Key | None
    raw_search_after: list[Any] | None
    field: str | None = None


def tiebreaker(event_id: str) -> str:
    """The opaque second member of X-Search_after (like the API's "DZrPyW8BNsa9iKWoOm7h"):
    unique per event, stable, and NOT its id, so a client that took it for the id breaks."""
    number = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=15).digest(), "big")
    chars = []
    for _ in range(20):
        number, digit = divmod(number, 62)
        chars.append(_TIEBREAK_ALPHABET[digit])
    return "".join(chars)


def _entry(event: dict[str, Any], epoch_ms: int | None = None) -> Entry:
    try:
        if epoch_ms is None:
            epoch_ms = parse_ts(event["timestamp"])
        key = (epoch_ms, tiebreaker(str(event["id"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"event needs an RFC 3339 'timestamp' and an 'id': {exc}") from None
    blob = _ENCODER.encode(event).encode()
    return key, blob, str(event.get("service", ""))


class _OrgStore:
    """One organisation's events, sorted by (timestamp ms, tie-breaker); late events wait in
    a heap. Tie-breakers derive from ids, so they identify events as well as ids do."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.blobs: list[bytes] = []
        self.services: list[str] = []
        self.ids: set[str] = set()  # tie-breakers stored
        self.pending: list[tuple[float, int, Entry]] = []
        self._pending_seq = 0

    def add(self, entries: list[Entry], visible_at: float | None) -> int:
        if visible_at is not None:
            for entry in entries:
                self._pending_seq += 1
                heapq.heappush(self.pending, (visible_at, self._pending_seq, entry))
            return len(entries)
        return self._insert(entries)

    def promote(self, now: float) -> None:
        due: list[Entry] = []
        while self.pending and self.pending[0][0] <= now:
            due.append(heapq.heappop(self.pending)[2])
        if due:
            self._insert(due)

    def _insert(self, entries: list[Entry]) -> int:
        fresh: list[Entry] = []
        for entry in entries:
            if entry[0][1] not in self.ids:
                self.ids.add(entry[0][1])
                fresh.append(entry)
        if len(fresh) > 64:
            merged = sorted([*zip(self.keys, self.blobs, self.services), *fresh])
            self.keys = [e[0] for e in merged]
            self.blobs = [e[1] for e in merged]
            self.services = [e[2] for e in merged]
        else:
            for key, blob, service in fresh:
                index = bisect_right(self.keys, key)
                self.keys.insert(index, key)
                self.blobs.insert(index, blob)
                self.services.insert(index, service)
        return len(fresh)

    def window(self, query: Query) -> tuple[int, int]:
        """Index range [lo, hi) of the events inside the query's time window."""
        lo = bisect_left(self.keys, (query.start_ms, ""))
        hi = len(self.keys) if query.end_ms is None else bisect_left(self.keys, (query.end_ms, ""))
        return lo, hi

    def page(self, query: Query) -> list[int]:
        """Indexes of the events of one page, in answer order."""
        lo, hi = self.window(query)
        after = query.search_after
        if query.sort == "ASC":
            if after is not None:
                lo = max(lo, bisect_right(self.keys, after))
            candidates = range(lo, hi)
        else:
            if after is not None:
                hi = min(hi, bisect_left(self.keys, after))
            candidates = range(hi - 1, lo - 1, -1)
        if query.services is None:
            return list(candidates[: query.limit])
        picked: list[int] = []
        for index in candidates:
            if self.services[index] in query.services:
                picked.append(index)
                if len(picked) >= query.limit:
                    break
        return picked

    def matching(self, query: Query) -> list[int]:
        lo, hi = self.window(query)
        if query.services is None:
            return list(range(lo, hi))
        return [i for i in range(lo, hi) if self.services[i] in query.services]


def _parse_services(body: dict[str, Any]) -> frozenset[str] | None:
    services = body.get("service")
    if not isinstance(services, list) or not services:
        raise QueryError(
            f"service is required: a non-empty array of supported values: {_SERVICES_TEXT}"
        )
    bad = [s for s in services if s not in QUERY_SERVICES]
    if bad:
        raise QueryError(f"invalid service {bad}; supported values: {_SERVICES_TEXT}")
    return None if "all" in services else frozenset(services)


def _parse_time(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError:
        raise QueryError(
            f"{name} must be an RFC 3339 UTC timestamp such as 2022-12-18T14:57:03.801Z, "
            f"got {value!r}"
        ) from None


def _parse_window(body: dict[str, Any]) -> tuple[int, int | None]:
    if body.get("start_time") is None:
        raise QueryError("start_time is required (RFC 3339 UTC, e.g. 2022-12-18T14:57:03.801Z)")
    start_ms = _parse_time(body, "start_time")
    end_ms = _parse_time(body, "end_time")
    assert start_ms is not None
    if start_ms > now_ms():
        raise QueryError(f"start_time {body['start_time']} is in the future")
    if end_ms is not None and end_ms <= start_ms:
        raise QueryError(
            f"Start Time not after End Time: start_time {body['start_time']} must be before "
            f"end_time {body['end_time']}"
        )
    return start_ms, end_ms


def _parse_limit(body: dict[str, Any]) -> int:
    """Like the API: a nonsensical limit (0, negative, above the maximum, not a number) is no
    error, it silently becomes the default; X-Limit tells what was applied."""
    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        return DEFAULT_LIMIT
    return limit


def _parse_sort(body: dict[str, Any]) -> str:
    """ASC or DESC in any case; anything else silently becomes ASC."""
    sort = body.get("sort")
    if isinstance(sort, str) and sort.upper() in ("ASC", "DESC"):
        return sort.upper()
    return "ASC"


def _parse_search_after(body: dict[str, Any]) -> tuple[Key | None, list[Any] | None]:
    value = body.get("search_after")
    if value is None or value == []:
        return None, None
    valid = (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (int, float))
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
    )
    if not valid:
        raise QueryError(
            "search_after must be the JSON array from the previous X-Search_after header, "
            f'e.g. [1576181718000,"DZrPyW8BNsa9iKWoOm7h"], got {value!r}'
        )
    return (int(value[0]), value[1]), value


def parse_query(body: Any, need_field: bool = False) -> Query:
    """Validate an EventQuery body; raises QueryError with the message a 400 carries."""
    if not isinstance(body, dict):
        raise QueryError("request body must be a JSON object (EventQuery)")
    services = _parse_services(body)
    start_ms, end_ms = _parse_window(body)
    search_after, raw = _parse_search_after(body)
    field = body.get("field")
    if need_field and (not isinstance(field, str) or not field):
        raise QueryError("field is required: the event field to bucket by, e.g. service")
    return Query(
        services=services,
        start_ms=start_ms,
        end_ms=end_ms,
        limit=_parse_limit(body),
        sort=_parse_sort(body),
        search_after=search_after,
        raw_search_after=raw,
        field=field,
    )


def _dig(event: dict[str, Any], dotted: str) -> Any:
    value: Any = event
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class JumpCloudSimulator(BaseSimulator):
    """The DI API on `url` + /insights/directory/v1. Start with `.start()` or `with`."""

    name = "jumpcloud"
    api_body_limit = 1024 * 1024

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        org_ids: Sequence[str] | None = None,
        non_admin_keys: Sequence[str] = (),
        rate: float = 0.0,
        late_fraction: float = 0.0,
        late_delay_s: float = 120.0,
        seed: int = 0,
        retention_days: float | None = None,
        service_accounts: Mapping[str, str] | None = None,
        token_ttl_s: float = 3600.0,
        token_reported_ttl_s: float | None = None,
        provider_id: str | None = None,
        insights_disabled: Sequence[str] = (),
        latency_s: float = 0.0,
    ) -> None:
        """`service_accounts`: client id -> client secret for /oauth2/token; tokens live
        `token_ttl_s` seconds and announce `token_reported_ttl_s` (default: the real TTL) as
        expires_in, so a test can make a token expire before the client expects it.
        `provider_id`: the MSP provider whose portal events `x-provider-id` reads (store them
        with `org=sim.provider_store`). `insights_disabled`: orgs answered with 402.
        `latency_s`: every API answer (not /_sim/) waits this long first, like a real API's
        round trip (requests are served concurrently, so waits overlap)."""
        super().__init__(host, port)
        self.provider_id = provider_id
        self.insights_disabled: set[str] = set(insights_disabled)
        self.service_accounts = dict(service_accounts or {})
        self.token_ttl_s = token_ttl_s
        self.token_reported_ttl_s = token_reported_ttl_s
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.issued_tokens: list[str] = []  # every token handed out (tests look for leaks)
        self.api_key = api_key
        self.non_admin_keys = frozenset(non_admin_keys)
        self.org_ids: list[str] = list(org_ids) if org_ids else [DEFAULT_ORG_ID]
        self.rate = rate
        self.late_fraction = late_fraction
        self.late_delay_s = late_delay_s
        self.seed = seed
        self.retention_days = retention_days
        self.latency_s = latency_s
        # (monotonic arrival time, path, x-org-id values) of every API request, faults
        # included (tests measure request rates and pauses)
        self.arrivals: list[tuple[float, str, tuple[str, ...]]] = []
        self._lock = threading.Lock()
        self._stores: dict[str, _OrgStore] = {key: _OrgStore() for key in self._store_keys()}
        self._live_stop = threading.Event()
        self._live_thread: threading.Thread | None = None

    @property
    def provider_store(self) -> str | None:
        """The store key of the provider's own events (pass it as `org=` to add/generate)."""
        return PROVIDER_PREFIX + self.provider_id if self.provider_id else None

    def _store_keys(self) -> list[str]:
        return self.org_ids + ([self.provider_store] if self.provider_store else [])

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> JumpCloudSimulator:
        super().start()
        if self.rate > 0:
            self.start_live(self.rate, self.late_fraction, self.late_delay_s)
        return self

    def stop(self) -> None:
        self.stop_live()
        super().stop()

    def __enter__(self) -> JumpCloudSimulator:
        return self.start()

    # -- events ----------------------------------------------------------------------------
    def add_events(
        self,
        events: Iterable[dict[str, Any]],
        org: str | None = None,
        visible_after_s: float = 0,
    ) -> int:
        """Store events; returns how many were new (ids already stored are ignored).

        `org=None` files each event under its `organization` when that is a configured org,
        else under the first org. `visible_after_s > 0` models late indexing: the events are
        absent from every answer until that many seconds have passed (whatever their
        timestamp).
        """
        grouped: dict[str, list[Entry]] = {}
        for event in events:
            target = org or event.get("organization")
            if target not in self._stores:
                if org is not None:
                    raise ValueError(f"unknown org {org!r}; configured: {self._store_keys()}")
                target = self.org_ids[0]
            grouped.setdefault(target, []).append(_entry(event))
        visible_at = time.monotonic() + visible_after_s if visible_after_s > 0 else None
        added = 0
        with self._lock:
            for target, entries in grouped.items():
                added += self._stores[target].add(entries, visible_at)
        return added

    def generate(
        self,
        count: int,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        seed: int | None = None,
        org: str | None = None,
        services: Sequence[str] | None = None,
        visible_after_s: float = 0,
        deep_every: int = 0,
    ) -> int:
        """Generate `count` events per org (`org=None`: every configured org) over
        [start, end] (default: the last 3 days up to now) and store them."""
        end_ms = to_epoch_ms(end) if end is not None else now_ms()
        start_ms = to_epoch_ms(start) if start is not None else end_ms - 3 * _DAY_MS
        visible_at = time.monotonic() + visible_after_s if visible_after_s > 0 else None
        added = 0
        for target in [org] if org else self.org_ids:
            if target not in self._stores:
                raise ValueError(f"unknown org {target!r}; configured: {self._store_keys()}")
            stream = iter_timed_events(
                count,
                start_ms,
                end_ms,
                seed=self.seed if seed is None else seed,
                org=target,
                services=list(services) if services else None,
                deep_every=deep_every,
            )
            portal = target == self.provider_store
            batch: list[Entry] = []
            for epoch_ms, event in stream:
                if portal:  # the MSP portal's own events: by the provider, for no one org
                    event["organization"] = ""
                    event["provider"] = self.provider_id
                batch.append(_entry(event, epoch_ms))
                if len(batch) >= 20000:
                    added += self._store(target, batch, visible_at)
                    batch = []
            added += self._store(target, batch, visible_at)
        return added

    def _store(self, org: str, entries: list[Entry], visible_at: float | None) -> int:
        with self._lock:
            return self._stores[org].add(entries, visible_at)

    def add_burst(
        self,
        count: int,
        at: TimeLike | None = None,
        org: str | None = None,
        seed: int | None = None,
        visible_after_s: float = 0,
    ) -> list[dict[str, Any]]:
        """Store `count` events sharing one millisecond (default: 1 minute ago); returns them."""
        target = org or self.org_ids[0]
        epoch_ms = to_epoch_ms(at) if at is not None else now_ms() - 60_000
        events = burst_events(count, epoch_ms, self.seed if seed is None else seed, target)
        self.add_events(events, target, visible_after_s)
        return events

    def clear_events(self) -> None:
        with self._lock:
            self._stores = {key: _OrgStore() for key in self._store_keys()}

    def event_count(self, org: str | None = None, include_pending: bool = False) -> int:
        with self._lock:
            stores = [self._stores[org]] if org else list(self._stores.values())
            for store in stores:
                store.promote(time.monotonic())
            return sum(len(s.keys) + (len(s.pending) if include_pending else 0) for s in stores)

    def reset(self) -> None:
        super().reset()
        self.clear_events()
        with self._lock:
            self.arrivals.clear()

    @property
    def stats(self) -> dict[str, Any]:
        data = super().stats
        with self._lock:
            for store in self._stores.values():
                store.promote(time.monotonic())
            data["events_stored"] = {org: len(s.keys) for org, s in self._stores.items()}
            data["events_pending"] = {org: len(s.pending) for org, s in self._stores.items()}
        data.setdefault("pages_served", 0)
        data.setdefault("events_served", 0)
        return data

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The last 10000 API requests: path, org, status and the parsed body."""
        return list(self.request_log)

    # -- live generation -------------------------------------------------------------------
    def start_live(
        self, rate: float, late_fraction: float = 0.0, late_delay_s: float = 120.0
    ) -> None:
        """Append `rate` events/s stamped now; a `late_fraction` of them becomes visible only
        `late_delay_s` later (late indexing: old timestamp when they appear)."""
        self.stop_live()
        self.rate, self.late_fraction, self.late_delay_s = rate, late_fraction, late_delay_s
        self._live_stop = threading.Event()
        self._live_thread = threading.Thread(
            target=self._live_loop, name="sandbox-jumpcloud-live", daemon=True
        )
        self._live_thread.start()

    def stop_live(self) -> None:
        self._live_stop.set()
        if self._live_thread is not None:
            self._live_thread.join(timeout=5)
            self._live_thread = None

    def _live_loop(self) -> None:
        rng = random.Random(f"live:{self.seed}")
        started, produced = time.monotonic(), 0
        while not self._live_stop.wait(0.1):
            due = int((time.monotonic() - started) * self.rate) - produced
            for _ in range(max(due, 0)):
                produced += 1
                self._live_event(rng, produced)

    def _live_event(self, rng: random.Random, index: int) -> None:
        org = rng.choice(self.org_ids)
        event_id = make_id(f"live:{self.seed}:{time.time_ns()}", index)
        event = make_event(rng, now_ms(), event_id, org)
        late = rng.random() < self.late_fraction
        self.add_events([event], org, self.late_delay_s if late else 0)

    # -- HTTP ------------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        if not request.path.startswith("/_sim/"):
            with self._lock:
                self.arrivals.append(
                    (time.monotonic(), request.path, tuple(request.header_all("x-org-id")))
                )
            if self.latency_s > 0:
                time.sleep(self.latency_s)
        return super().dispatch(request)

    def handle_api(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            return self._token(request)
        routes = {
            f"{API_PREFIX}/events": self._events,
            f"{API_PREFIX}/events/count": self._count,
            f"{API_PREFIX}/events/distinct": self._distinct,
        }
        route = routes.get(request.path)
        if route is None:
            return Response.message(404, f"Not Found: {request.path}")
        if request.method != "POST":
            return Response.message(405, f"Method Not Allowed: use POST {request.path}")
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        scope = self._resolve_scope(request)
        if isinstance(scope, Response):
            return scope
        disabled = [key for key in scope if key in self.insights_disabled]
        if disabled:
            return Response.message(402, INSIGHTS_DISABLED)
        try:
            body = request.json()
        except ValueError as exc:
            return Response.message(400, str(exc))
        try:
            response = route(scope, body)
        except QueryError as exc:
            response = Response.message(400, str(exc))
        self.request_log.append(
            {"path": request.path, "org": ",".join(scope), "status": response.status, "body": body}
        )
        return response

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return Response.message(405, f"Method Not Allowed: use POST {TOKEN_PATH}")
        try:
            form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8")).items()}
        except UnicodeDecodeError:
            form = {}
        if form.get("grant_type") != "client_credentials":
            return Response.json(
                400, {"error": "unsupported_grant_type", "error_description": "client_credentials"}
            )
        if "api" not in (form.get("scope") or "").split():
            return Response.json(400, {"error": "invalid_scope", "error_description": "use api"})
        auth = request.header("Authorization") or ""
        client_id = secret = None
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, sep, secret = decoded.partition(":")
            if not sep:
                client_id = secret = None
        if client_id is None or self.service_accounts.get(client_id) != secret:
            self.stats_counter.incr("tokens_refused")
            return Response.json(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
            )
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_ttl_s
            self.issued_tokens.append(token)
        self.stats_counter.incr("tokens_issued")
        reported = (
            self.token_ttl_s if self.token_reported_ttl_s is None else self.token_reported_ttl_s
        )
        expires_in: float = int(reported) if float(reported).is_integer() else reported
        return Response.json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": expires_in,
                "scope": "api",
            },
        )

    def expire_tokens(self) -> None:
        """Every issued token stops working now (as if all had expired)."""
        with self._lock:
            self._tokens.clear()

    def _authenticate(self, request: Request) -> Response | None:
        auth = request.header("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            with self._lock:
                expiry = self._tokens.get(auth[7:].strip())
            if expiry is None:
                return Response.message(401, "Unauthorized: unknown access token")
            if time.monotonic() >= expiry:
                self.stats_counter.incr("expired_tokens_refused")
                return Response.message(401, "Unauthorized: access token expired")
            if (
                not [v for v in request.header_all("x-org-id") if v.strip()]
                and not (request.header("x-provider-id") or "").strip()
            ):
                return Response.message(
                    400, "x-org-id header is required with a service account token"
                )
            return None
        key = request.header("x-api-key")
        if not key:
            return Response.message(401, "Unauthorized: missing x-api-key header")
        if key in self.non_admin_keys:
            return Response.message(403, "Forbidden: this API key is not an administrator key")
        if key != self.api_key:
            return Response.message(401, "Unauthorized: invalid x-api-key")
        return None

    def _resolve_scope(self, request: Request) -> tuple[str, ...] | Response:
        """The stores one request reads: the provider's (x-provider-id), or the orgs named by
        its x-org-id headers (several allowed: the answer mixes their events), or the key's
        only org."""
        provider = (request.header("x-provider-id") or "").strip()
        if provider:
            if provider != self.provider_id:
                return Response.message(403, f"Forbidden: provider {provider} is not accessible")
            return (PROVIDER_PREFIX + provider,)
        given: list[str] = []
        for value in request.header_all("x-org-id"):
            # one header may also carry a comma-separated list (HTTP folds repeated headers)
            for org in value.split(","):
                org = org.strip()
                if org and org not in given:
                    given.append(org)
        if not given:
            if len(self.org_ids) == 1:
                return (self.org_ids[0],)
            return Response.message(
                400,
                "x-org-id header is required: this key administers several organizations "
                f"({', '.join(self.org_ids)})",
            )
        for org in given:
            if org not in self.org_ids:
                return Response.message(403, f"Forbidden: organization {org} is not accessible")
        return tuple(given)

    def _effective(self, query: Query) -> Query:
        if self.retention_days is None:
            return query
        floor = now_ms() - int(self.retention_days * _DAY_MS)
        if query.start_ms >= floor:
            return query
        return dataclasses.replace(query, start_ms=floor)

    def _events(self, scope: tuple[str, ...], body: Any) -> Response:
        query = self._effective(parse_query(body))
        picked: list[tuple[Key, bytes]] = []
        with self._lock:
            for key in scope:
                store = self._stores[key]
                store.promote(time.monotonic())
                picked.extend((store.keys[i], store.blobs[i]) for i in store.page(query))
        if len(scope) > 1:  # merge the orgs' pages into one stream, then cut at the limit
            picked.sort(key=lambda kb: kb[0], reverse=query.sort == "DESC")
            del picked[query.limit :]
        blobs = [blob for _, blob in picked]
        last = picked[-1][0] if picked else None
        if last is not None:
            search_after = _compact([last[0], last[1]])
        else:
            search_after = _compact(query.raw_search_after or [])
        self.stats_counter.incr("pages_served")
        self.stats_counter.incr("events_served", len(blobs))
        headers = {
            "X-Result-Count": str(len(blobs)),
            "X-Limit": str(query.limit),
            "X-Sort": query.sort,
            "X-Search_after": search_after,
        }
        return Response(200, b"[" + b",".join(blobs) + b"]", headers)

    def _count(self, scope: tuple[str, ...], body: Any) -> Response:
        query = self._effective(parse_query(body))
        count = 0
        with self._lock:
            for key in scope:
                store = self._stores[key]
                store.promote(time.monotonic())
                count += len(store.matching(query))
        return Response.json(200, {"count": count})

    def _distinct(self, scope: tuple[str, ...], body: Any) -> Response:
        query = self._effective(parse_query(body, need_field=True))
        assert query.field is not None
        values: list[Any] = []
        blobs: list[bytes] = []
        with self._lock:
            for key in scope:
                store = self._stores[key]
                store.promote(time.monotonic())
                indexes = store.matching(query)
                if query.field == "service":
                    values.extend(store.services[i] for i in indexes)
                else:
                    blobs.extend(store.blobs[i] for i in indexes)
        if query.field != "service":
            values = [_dig(json.loads(b), query.field) for b in blobs]
        counts: dict[str, tuple[Any, int]] = {}
        for value in values:
            if value is None:
                continue
            token = _compact(value)
            counts[token] = (value, counts.get(token, (value, 0))[1] + 1)
        buckets = sorted(counts.values(), key=lambda kv: (-kv[1], _compact(kv[0])))
        return Response.json(
            200,
            {
                "buckets": [{"key": k, "doc_count": n} for k, n in buckets],
                "doc_count_error_upper_bound": 0,
                "sum_other_doc_count": 0,
            },
        )

    # -- control ---------------------------------------------------------------------------
    def extra_control(self, request: Request) -> Response:
        if (request.method, request.path) == ("POST", "/_sim/insights"):
            return self._control_insights(request)
        if (request.method, request.path) != ("POST", "/_sim/events"):
            return super().extra_control(request)
        try:
            added = self._control_events(request.json())
        except (ValueError, TypeError) as exc:
            return Response.message(400, str(exc))
        return Response.json(200, {"added": added, "stored": self.stats["events_stored"]})

    def set_insights(self, org: str, enabled: bool) -> None:
        """Switch Directory Insights off (402 for every request naming the org) or back on."""
        if org not in self._stores:
            raise ValueError(f"unknown org {org!r}; configured: {self._store_keys()}")
        if enabled:
            self.insights_disabled.discard(org)
        else:
            self.insights_disabled.add(org)

    def _control_insights(self, request: Request) -> Response:
        try:
            data = request.json()
            if not isinstance(data, dict) or not isinstance(data.get("enabled"), bool):
                raise ValueError('expected {"org": "<org id>", "enabled": true|false}')
            self.set_insights(str(data.get("org")), data["enabled"])
        except ValueError as exc:
            return Response.message(400, str(exc))
        return Response.json(200, {"insights_disabled": sorted(self.insights_disabled)})

    def _control_events(self, data: Any) -> int:
        if isinstance(data, list):
            return self.add_events(data)
        if not isinstance(data, dict):
            raise ValueError("POST /_sim/events takes an array of events or an object")
        org = data.get("org")
        visible_after_s = float(data.get("visible_after_s") or 0)
        if "events" in data:
            return self.add_events(data["events"], org, visible_after_s)
        if "burst" in data:
            return len(
                self.add_burst(
                    int(data["burst"]), data.get("at"), org, data.get("seed"), visible_after_s
                )
            )
        if "generate" in data:
            end = data.get("end")
            start = data.get("start")
            if start is None and data.get("days") is not None:
                end_ms = to_epoch_ms(end) if end is not None else now_ms()
                start, end = end_ms - int(float(data["days"]) * _DAY_MS), end_ms
            return self.generate(
                int(data["generate"]),
                start,
                end,
                seed=data.get("seed"),
                org=org,
                services=data.get("services"),
                visible_after_s=visible_after_s,
                deep_every=int(data.get("deep_every") or 0),
            )
        raise ValueError('expected "events", "generate" or "burst" in the object')
