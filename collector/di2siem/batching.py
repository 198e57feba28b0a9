"""Batches capped by event count AND by body bytes.

An item is one serialised event plus what the state needs once the SIEM accepted it: its id,
its time (epoch ms) and the org stream it belongs to (a shared query's batches mix members).
Bodies are built by joining bytes, never by re-serialising.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Item(NamedTuple):
    data: bytes
    event_id: str | None
    ts_ms: int | None
    member: Any = None  # the org's OrgRun (engine/context.py) whose checkpoint records it


class Oversize(NamedTuple):
    """An event that alone exceeds the batch byte cap: never posted, only recorded. Same
    positions as Item for the id and time; ``nbytes`` is its size (at least)."""

    nbytes: int
    event_id: str | None
    ts_ms: int | None
    member: Any = None  # as Item.member


class Framing(NamedTuple):
    head: bytes
    sep: bytes
    tail: bytes

    def body(self, items: list[Item]) -> bytes:
        """head + data joined by sep + tail, built in one allocation (batches are MBs)."""
        n = len(items)
        if n == 0:
            return self.head + self.tail
        if n == 1:
            return self.head + items[0][0] + self.tail
        parts = [i[0] for i in items]
        parts[0] = self.head + parts[0]
        parts[-1] = parts[-1] + self.tail
        return self.sep.join(parts)

    def size(self, items: list[Item]) -> int:
        if not items:
            return len(self.head) + len(self.tail)
        return (
            len(self.head)
            + len(self.tail)
            + sum(len(i.data) for i in items)
            + len(self.sep) * (len(items) - 1)
        )


JSON_LINES = Framing(b"", b"\n", b"\n")
JSON_ARRAY = Framing(b"[", b",", b"]")


class Batcher:
    """Accumulates items; ``add`` returns the batches that became full (usually none)."""

    def __init__(self, max_count: int, max_bytes: int, framing: Framing) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.framing = framing
        self.overhead = len(framing.head) + len(framing.tail)
        self.sep_len = len(framing.sep)
        self.items: list[Item] = []
        self.size = self.overhead

    def fits_alone(self, nbytes: int) -> bool:
        return self.overhead + nbytes <= self.max_bytes

    def add(self, item: Item) -> list[Item] | None:
        """Add one item (it must fit alone); return the previous batch when it is full."""
        items = self.items
        size = self.size + self.sep_len + len(item[0])
        if items and (len(items) >= self.max_count or size > self.max_bytes):
            self.items = [item]
            self.size = self.overhead + len(item[0])
            return items
        if not items:
            size -= self.sep_len
        items.append(item)
        self.size = size
        return None

    def pending(self) -> bool:
        return bool(self.items)

    def take(self) -> list[Item]:
        items = self.items
        self.items = []
        self.size = self.overhead
        return items
