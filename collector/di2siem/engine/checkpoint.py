"""The checkpoint: what the state records once the SIEM accepted a batch (or an event was
skipped as too large), one batch at a time: the events' keys and the cursor moved to their
newest time within what the fetch really covered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..batching import Item, Oversize
from ..timeutil import now_ms
from .context import OrgRun, StreamContext


def bound(o: OrgRun) -> int:
    """The latest time the org's fetch has covered: JumpCloud's clock at its client's last
    answer (the host's when its answers carry no Date header)."""
    jc = o.source
    if jc.server_clock is not None:
        return jc.server_clock[0]
    return now_ms()


class Checkpoint:
    """Records accepted batches and skipped events in the orgs' state."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx

    def accepted(self, o: OrgRun, items: list[Item]) -> None:
        o.shipped += len(items)
        o.batches += 1
        self.record(o, items)
        o.pending.difference_update([item[1] for item in items])

    def accepted_by_member(self, items: list[Item]) -> None:
        """An accepted batch of a shared query, recorded member by member."""
        by_member: dict[Any, list[Item]] = {}
        for item in items:
            by_member.setdefault(item[3], []).append(item)
        for o, own in by_member.items():
            self.accepted(o, own)

    def oversize(self, item: Oversize) -> None:
        """An event that alone exceeds siem.max_batch_bytes (measured here): reported,
        remembered as handled, never posted."""
        o = item.member
        o.skipped += 1
        self.ctx.log.warning(
            "event larger than siem.max_batch_bytes; skipped",
            org=o.org,
            id=item.event_id,
            bytes=item.nbytes,
            max_batch_bytes=self.ctx.cfg.siem.max_batch_bytes,
        )
        self.record(o, [item])
        o.pending.discard(item[1])

    def record(self, o: OrgRun, items: Sequence[Item | Oversize]) -> None:
        """Remember the items' keys and move the cursor to their newest time within the
        covered bound; items stamped past it are remembered under their own time, untimed
        ones at the bound, and neither moves the cursor."""
        state = o.state
        covered = bound(o)
        stamps = [item[2] for item in items]
        if None in stamps:
            stamps = [t for t in stamps if t is not None]
            pairs = [(item[1], covered if item[2] is None else item[2]) for item in items]
        else:
            pairs = [(item[1], item[2]) for item in items]
        newest = state.cursor_ms
        if stamps:
            latest = max(stamps)
            if latest > covered:  # future-stamped: remembered under its time, moves nothing
                latest = max((t for t in stamps if t <= covered), default=None)
            if latest is not None and (newest is None or latest > newest):
                newest = latest
        state.cursor_ms = newest
        recent = state.recent
        recent.add(pairs)
        if newest is not None:
            recent.prune(newest - self.ctx.overlap_ms)
            floor = recent.cap(self.ctx.cfg.recent_ids_max, newest)
            if floor is not None and (state.floor_ms is None or floor > state.floor_ms):
                state.floor_ms = floor
        self.ctx.store.save(o.org)
