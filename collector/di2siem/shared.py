"""One shared query's turn: several caught-up orgs read through one JumpCloud stream.

The group's orgs go in one request (one ``x-org-id`` line each), from the earliest member's
window start. Every event is routed by its ``organization`` to its member, and from there on
it is that member's as in a stream of its own (pipeline.py): an event older than the member's
own window start is already covered (skipped), the member's id memory drops duplicates, and
batches (which may mix members: the shipped shape does not depend on the org) are recorded
per member once the SIEM accepted them (cursor moved to the member's own events' times within
JumpCloud's clock). A member without events in the answer keeps its cursor.

An event this stream cannot route (no ``organization``, one the query did not name, or an
element that is no event at all, whose org cannot be read) is never guessed: the stream stops
before it, what was accepted stays recorded, and the caller serves the members alone
(``unroutable``). Everything after that event is re-read by those solo streams, since no
member's cursor passed it (the stream is ascending).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .batching import Batcher, Item, Oversize
from .timeutil import MAX_MS, format_ms, parse_ms

if TYPE_CHECKING:
    from .pipeline import Lane, OrgRun, Pipeline


class Routed(NamedTuple):
    """An Item (same positions) that knows the member it belongs to."""

    data: bytes
    event_id: str | None
    ts_ms: int | None
    run: Any  # the member's OrgRun


class Unroutable(NamedTuple):
    """The first event the stream could not route: its key, its readable time, and why."""

    key: str
    ts_ms: int | None
    # "missing" (no organization), "foreign" (an org not in the query) or UNPARSABLE (an
    # element that is no event: jumpcloud.UNPARSABLE)
    reason: str


UNPARSABLE = "unparsable"


class SharedStream:
    def __init__(self, pipeline: Pipeline, runs: list[OrgRun], lane: Lane) -> None:
        self.pipeline = pipeline
        self.runs = runs
        self.lane = lane
        self.unroutable: Unroutable | None = None

    def run(self) -> None:
        from .pipeline import (
            BATCH,
            SKIP,
            SKIPPED,
            BudgetReached,
            PositionAhead,
            Prefetcher,
            Sender,
            event_key,
        )

        p, lane = self.pipeline, self.lane
        jc, sink = lane.jc, lane.sink
        windows = {}
        for o in self.runs:
            try:
                windows[o.org] = p._window(o, jc)
            except PositionAhead as exc:  # that member alone fails; the others are served
                p._member_failed(o, exc)
        if not windows:
            return
        self.runs = [o for o in self.runs if o.org in windows]
        start = min(start for start, _ in windows.values())
        batcher = Batcher(p.cfg.siem.batch_size, p.cfg.siem.max_batch_bytes, sink.framing)
        alone_max = batcher.max_bytes - batcher.overhead
        members = {o.org: (o, p._digest(o, windows[o.org][0], alone_max)) for o in self.runs}
        shaper = lane.shaper
        src = shaper.src

        def digest(event: dict, text: str, s: int, e: int, index: int) -> tuple:
            org = event.get("organization")
            member = members.get(org) if type(org) is str else None
            if member is None:
                if index == 0:
                    shaper.begin_page(event, text[s:e])
                reason = "missing" if org is None or org == "" else "foreign"
                return (
                    None,
                    Unroutable(event_key(event.get("id"), text[s:e]), _time(event, src), reason),
                )
            o, member_digest = member
            return (o, member_digest(event, text, s, e, index))

        def defect(text: str, reason: str) -> tuple:
            # whose it is cannot be read: the members' own streams dead-letter it
            return (None, Unroutable(event_key(None, text), None, UNPARSABLE))

        pages = Prefetcher(jc.pages(format_ms(start), tuple(members), digest, defect))
        sender = Sender(sink, _accepted_by(p), lambda pair: p._oversize(*pair))
        try:
            for _text, page in pages:
                _text = None
                for o, item in page:
                    if o is None:
                        self.unroutable = item
                        break
                    o.fetched += 1
                    if item is SKIPPED:
                        o.duplicates += 1
                        continue
                    full = self._take(o, item, batcher, sender, alone_max, SKIP)
                    if full is not None:
                        sender.submit(BATCH, full)
                        if p.clock() >= p.deadline:
                            raise BudgetReached()
                if self.unroutable is not None:
                    break
                page = None
                if p.clock() >= p.deadline:
                    raise BudgetReached()
            if batcher.pending():
                sender.submit(BATCH, batcher.take())
            sender.finish()
        except BaseException:
            pages.stop()
            sender.finish()
            raise
        pages.stop()
        for o in self.runs:
            start, first = windows[o.org]
            if first and o.state.cursor_ms is None and o.state.floor_ms is None:
                o.state.floor_ms = start - 1
                p.store.save(o.org)

    def _take(
        self, o: OrgRun, item: Any, batcher: Batcher, sender: Any, alone_max: int, skip: str
    ) -> list | None:
        """One routed event of member ``o``: dropped when already shipped or handed over,
        else batched; the batch that became full, if any."""
        pending = o.pending
        shipped = o.state.recent.times
        if type(item) is Oversize:
            if item[1] in pending or item[1] in shipped:
                o.duplicates += 1
            else:
                pending.add(item[1])
                sender.submit(skip, (o, item))
            return None
        deep = False
        if type(item) is not Item:
            item, deep = item
        key = item[1]
        if key in pending or key in shipped:
            o.duplicates += 1
            return None
        if deep or item[2] is None:
            self.pipeline._flagged(o, item, deep)
        pending.add(key)
        if len(item[0]) > alone_max:
            sender.submit(skip, (o, Oversize(len(item[0]), key, item[2])))
            return None
        return batcher.add(Routed(item[0], key, item[2], o))


def _accepted_by(p: Pipeline):
    """The sender's callback: an accepted batch recorded member by member."""

    def accepted(items: list[Routed]) -> None:
        by_member: dict[Any, list[Routed]] = {}
        for item in items:
            by_member.setdefault(item[3], []).append(item)
        for o, own in by_member.items():
            p._accepted(o, own)

    return accepted


def _time(event: dict, src: str) -> int | None:
    raw = event.get(src)
    if type(raw) is not str:
        return None
    try:
        ts = parse_ms(raw)
    except ValueError:
        return None
    return ts if ts <= MAX_MS else None
