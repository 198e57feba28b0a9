"""One organisation's events, kept sorted with their JSON pre-serialised, so a page is one
bytes join; and the opaque tie-breaker that orders events sharing a millisecond."""

from __future__ import annotations

import hashlib
import heapq
import json
from bisect import bisect_left, bisect_right
from typing import Any

from ..events import parse_ts
from .query import Key, Query

PROVIDER_PREFIX = "provider:"  # store key of an MSP provider's own events
_TIEBREAK_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_ENCODER = json.JSONEncoder(separators=(",", ":"))

Entry = tuple[Key, bytes, str]  # key, serialised event, service


def tiebreaker(event_id: str) -> str:
    """The opaque second member of X-Search_after (like the API's "DZrPyW8BNsa9iKWoOm7h"):
    unique per event, stable, and NOT its id, so a client that took it for the id breaks."""
    number = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=15).digest(), "big")
    chars = []
    for _ in range(20):
        number, digit = divmod(number, 62)
        chars.append(_TIEBREAK_ALPHABET[digit])
    return "".join(chars)


def to_entry(event: dict[str, Any], epoch_ms: int | None = None) -> Entry:
    try:
        if epoch_ms is None:
            epoch_ms = parse_ts(event["timestamp"])
        key = (epoch_ms, tiebreaker(str(event["id"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"event needs an RFC 3339 'timestamp' and an 'id': {exc}") from None
    blob = _ENCODER.encode(event).encode()
    return key, blob, str(event.get("service", ""))


class OrgStore:
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
