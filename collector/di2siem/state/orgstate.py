"""One org's state and its file's text.

Per org: ``cursor`` (time of the newest event the SIEM accepted), ``floor`` (exclusive lower
bound: events at or before it count as shipped), ``served`` (wall time a run last began
reading it; the least recently served org goes first), ``recent_ids`` (id -> epoch ms of shipped
events within the overlap window behind the cursor, capped) and ``ops`` (the run record and
lifetime totals of runrecord.py, opaque here, saved with the cursor so they agree with it).
``recent_ids`` is written last, so the small part in front of it (``read_meta``) is all that
ordering, ``status`` and the metrics read.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from ..errors import StateError
from ..timeutil import format_ms, parse_ms
from .layout import VERSION
from .recent import RecentIds, encode_compact

_encode = json.JSONEncoder(ensure_ascii=False).encode


class OrgState:
    def __init__(
        self,
        cursor_ms: int | None = None,
        floor_ms: int | None = None,
        recent: RecentIds | None = None,
        served_ms: int | None = None,
        ops: dict[str, Any] | None = None,
        solo_until_ms: int | None = None,
    ) -> None:
        self.cursor_ms = cursor_ms
        self.floor_ms = floor_ms
        self.recent = recent if recent is not None else RecentIds()
        self.served_ms = served_ms
        # run record and totals (runrecord.py); during a run ``ops_live`` adds its counts so far
        self.ops: dict[str, Any] = ops if ops is not None else {}
        self.ops_live: Callable[[], dict[str, Any]] | None = None
        # a shared query met an event it could not route (engine/shared.py): the plan
        # (scheduler/plan.py) serves the org alone until its window starts after this
        # JumpCloud time
        self.solo_until_ms = solo_until_ms

    def start_ms(self, overlap_ms: int) -> int | None:
        """max(cursor - overlap, floor + 1 ms); None when the org has no state yet."""
        candidates = []
        if self.cursor_ms is not None:
            candidates.append(self.cursor_ms - overlap_ms)
        if self.floor_ms is not None:
            candidates.append(self.floor_ms + 1)
        return max(candidates) if candidates else None

    def json(self, name: str) -> str:
        """The org's file: everything small first, ``recent_ids`` last (see read_meta)."""
        cursor = "null" if self.cursor_ms is None else f'"{format_ms(self.cursor_ms)}"'
        floor = "null" if self.floor_ms is None else f'"{format_ms(self.floor_ms)}"'
        served = "null" if self.served_ms is None else f'"{format_ms(self.served_ms)}"'
        ops = self.ops_live() if self.ops_live is not None else self.ops
        ops_json = f'"ops":{encode_compact(ops)},' if ops else ""
        solo = self.solo_until_ms
        solo_json = "" if solo is None else f'"solo_until":"{format_ms(solo)}",'
        return (
            f'{{"version":{VERSION},"org":{_encode(name)},"served":{served},"cursor":{cursor},'
            f'"floor":{floor},{solo_json}{ops_json}"recent_ids":{self.recent.json()}}}\n'
        )


def _time_field(data: dict[str, Any], key: str) -> int | None:
    """An RFC 3339 field or null; ValueError for anything else (false, 0, "" included)."""
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise ValueError(key)
    return parse_ms(value)


def parse_org(name: str, data: Any, path: str, limit: int | None = None) -> OrgState:
    """The org's state from its decoded object; with ``limit``, at most that many recent ids
    (the newest; the floor rises to the newest dropped one, see RecentIds.capped)."""
    if not isinstance(data, dict):
        raise StateError(f"{path}: orgs.{name} is not an object")
    try:
        cursor = _time_field(data, "cursor")
        floor = _time_field(data, "floor")
        served = _time_field(data, "served")
        solo_until = _time_field(data, "solo_until")
    except ValueError:
        raise StateError(
            f"{path}: orgs.{name} has an unreadable cursor, floor, served or solo_until"
        ) from None
    ids = data.get("recent_ids")
    ids = {} if ids is None else ids
    if not isinstance(ids, dict) or not all(type(v) is int for v in ids.values()):
        raise StateError(f"{path}: orgs.{name}.recent_ids is not an object of id -> epoch ms")
    ops = data.get("ops")
    if limit is None:
        recent = RecentIds.from_mapping(ids)
    else:
        recent, dropped = RecentIds.capped(ids, limit, cursor)
        if dropped is not None and (floor is None or dropped > floor):
            floor = dropped
    return OrgState(
        cursor,
        floor,
        recent,
        served,
        ops if isinstance(ops, dict) else None,
        solo_until,
    )
