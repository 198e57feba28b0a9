"""The three DI endpoints (POST /insights/directory/v1/events, /events/count, /events/distinct)
behind authentication: pages with the X-* headers, counts, distinct-value buckets, the 402 of
an org without Directory Insights, and the retention floor."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import deque
from typing import Any

from ..events import DAY_MS, now_ms
from ..plumbing.wire import Request, Response
from .auth import TOKEN_PATH, Auth
from .query import Key, Query, QueryError, parse_query
from .store import OrgStore

API_PREFIX = "/insights/directory/v1"
INSIGHTS_DISABLED = "Directory Insights is not enabled for your organization"


def _dig(event: dict[str, Any], dotted: str) -> Any:
    value: Any = event
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Api(Auth):
    """The JumpCloud simulator's API answers (JumpCloudSimulator sets the attributes below)."""

    insights_disabled: set[str]
    retention_days: float | None
    request_log: deque[dict[str, Any]]
    _stores: dict[str, OrgStore]

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

    def _effective(self, query: Query) -> Query:
        if self.retention_days is None:
            return query
        floor = now_ms() - int(self.retention_days * DAY_MS)
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
