"""RecentIds: the bounded memory of recently shipped event ids (id -> epoch ms) within the
overlap window behind the cursor, by which a re-read event is known as a duplicate.

Writes happen after every accepted batch, so they must stay cheap: ids are kept in chunks
(one per accepted batch) whose JSON fragment is built once and re-joined on every write.
When the cap forces ids out, the floor rises to the newest evicted time, so a forgotten id
can never be re-read and re-sent.
"""

from __future__ import annotations

import json

_LOAD_CHUNK = 4096
encode_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _Chunk:
    __slots__ = ("fragment", "max_ms", "pairs")

    def __init__(self, pairs: list[tuple[str, int]]) -> None:
        self.pairs = pairs
        self.max_ms = max(ms for _, ms in pairs)
        self.fragment: str | None = None

    def json(self) -> str:
        if self.fragment is None:
            # ids within a chunk are unique (RecentIds.add), so the dict keeps every pair:
            # '"id":ms,...' in one C call, the same text as joining the pairs one by one
            self.fragment = encode_compact(dict(self.pairs))[1:-1]
        return self.fragment


class RecentIds:
    """Bounded memory of recently shipped event ids (id -> epoch ms)."""

    def __init__(self) -> None:
        self.times: dict[str, int] = {}
        self.chunks: list[_Chunk] = []

    @classmethod
    def from_mapping(cls, mapping: dict[str, int]) -> RecentIds:
        rid = cls()
        pairs = sorted(mapping.items(), key=lambda kv: kv[1])
        rid.times = dict(pairs)
        for start in range(0, len(pairs), _LOAD_CHUNK):
            rid.chunks.append(_Chunk(pairs[start : start + _LOAD_CHUNK]))
        return rid

    @classmethod
    def capped(
        cls, mapping: dict[str, int], limit: int, cursor_ms: int | None
    ) -> tuple[RecentIds, int | None]:
        """The newest ``limit`` ids of mapping and the newest time dropped (the floor must
        rise to it, as in cap(): a forgotten id is never re-read), or None. Ids at or after
        the cursor's millisecond are never dropped (cap() keeps their chunks too)."""
        if len(mapping) <= limit:
            return cls.from_mapping(mapping), None
        pairs = sorted(mapping.items(), key=lambda kv: kv[1])
        cut = len(pairs) - limit
        if cursor_ms is not None:
            while cut > 0 and pairs[cut - 1][1] >= cursor_ms:
                cut -= 1
        if cut == 0:
            return cls.from_mapping(mapping), None
        floor = pairs[cut - 1][1]
        del pairs[:cut]
        return cls.from_mapping(dict(pairs)), floor

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.times

    def __len__(self) -> int:
        return len(self.times)

    def add(self, pairs: list[tuple[str, int]]) -> None:
        times = self.times
        fresh = [pair for pair in pairs if pair[0] not in times]
        new = dict(fresh)
        if len(new) == len(fresh):
            times.update(new)
        else:  # an id twice in pairs: the first one wins
            fresh = []
            for event_id, ms in pairs:
                if event_id not in times:
                    times[event_id] = ms
                    fresh.append((event_id, ms))
        if fresh:
            self.chunks.append(_Chunk(fresh))

    def _drop(self, chunk: _Chunk) -> None:
        times = self.times
        for event_id, ms in chunk.pairs:
            if times.get(event_id) == ms:
                del times[event_id]

    def prune(self, cutoff_ms: int) -> None:
        """Forget chunks whose every id is older than cutoff_ms."""
        if not self.chunks or all(c.max_ms >= cutoff_ms for c in self.chunks):
            return
        keep = []
        for chunk in self.chunks:
            if chunk.max_ms >= cutoff_ms:
                keep.append(chunk)
            else:
                self._drop(chunk)
        self.chunks = keep

    def cap(self, limit: int, cursor_ms: int) -> int | None:
        """Evict the oldest chunks beyond ``limit`` ids; return the newest evicted time (the
        new floor) or None. Chunks at the cursor's millisecond are never evicted."""
        floor = None
        while len(self.times) > limit and len(self.chunks) > 1:
            oldest = min(range(len(self.chunks)), key=lambda k: self.chunks[k].max_ms)
            chunk = self.chunks[oldest]
            if chunk.max_ms >= cursor_ms:
                break
            del self.chunks[oldest]
            self._drop(chunk)
            floor = chunk.max_ms if floor is None else max(floor, chunk.max_ms)
        return floor

    def json(self) -> str:
        return "{" + ",".join(c.json() for c in self.chunks if c.pairs) + "}"
