"""An EventQuery body validated as the DI API does: what a 400 says, what silently defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..events import QUERY_SERVICES, now_ms, parse_ts

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
_SERVICES_TEXT = ", ".join(QUERY_SERVICES)

Key = tuple[int, str]  # (epoch ms, tie-breaker): the sort order and the search_after tuple


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
