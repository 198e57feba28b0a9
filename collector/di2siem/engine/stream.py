"""One org's stream, the five steps: fetch (JumpCloud pages from the org's window) → shape
(each event classified and shaped while its page is parsed: classify.py) → batch (duplicates
dropped, batches capped by count and bytes) → deliver (to the SIEM, in order) → checkpoint
(the state records each accepted batch: checkpoint.py).

Invariants:
- the cursor (and the ids it covers) are saved only after the SIEM accepted a batch, one
  batch at a time, so a failure or kill -9 at any instant re-sends at most the batch in flight;
- every run re-reads ``overlap_seconds`` behind the cursor and drops already-shipped ids;
- every event has an identity: the API's id, else a digest of its exact text (``event_key``);
  identities handed to the sender stay remembered until they are recorded;
- the cursor only moves to event times the fetch really covered: never past JumpCloud's own
  clock (the Date header of its last answer), never for an event whose time cannot be read
  or represented; the host clock never sets it;
- memory holds at most two pages (one processed, the next fetched), two batches (one posted,
  one queued) and the bounded recent-id memory, whatever the backlog.

Threads (prefetch, background send) and splicing are wrappers chosen by ``ctx.speed``
(overlap.py); a shared query (shared.py) routes one query's events through the same loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Callable

from ..batching import Batcher, Item, Oversize
from ..errors import BudgetReached, StateWriteError
from ..intakes.delivery import BatchDelivery
from ..shaping import Shaper
from ..source.client import JumpCloudClient
from ..timeutil import format_ms
from .checkpoint import Checkpoint
from .classify import classifier, dead_letters_of
from .context import OrgRun, StreamContext
from .decisions import BEFORE_WINDOW, SHIP, TOO_LARGE, Decision, Defect, Unroutable
from .overlap import BATCH, SKIP, Delivery
from .window import pin_first_window, window

_NO_MEMBER = object()  # before the first element: no member seen yet


class Stream:
    """The five steps over one JumpCloud client and one SIEM sink (a lane's)."""

    def __init__(
        self, ctx: StreamContext, jc: JumpCloudClient, sink: BatchDelivery, shaper: Shaper
    ) -> None:
        self.ctx = ctx
        self.jc = jc
        self.sink = sink
        self.shaper = shaper
        self.checkpoint = Checkpoint(ctx)
        self.until_ms: int | None = None  # a backfill's window end (exclusive); None: now

    def run(self, o: OrgRun) -> None:
        """One org's turn: its window read to the end (or the budget), shipped, recorded."""
        ctx = self.ctx
        start, first = self.window(o)
        ctx.log.debug("polling", org=o.org, start_time=format_ms(start))
        batcher = self.batcher()
        classify = self.classifier(o, start, batcher)
        until = self.until_ms
        if until is None:
            fetched = self.jc.pages(format_ms(start), o.org, classify, dead_letters_of(o))
        else:
            end = format_ms(until)
            pages = self.jc.pages(format_ms(start), o.org, classify, dead_letters_of(o), end)
            fetched = _before(pages, until)
        self.flow(fetched, lambda items: self.checkpoint.accepted(o, items), batcher, solo=o)
        pin_first_window(o, start, first, ctx.store)

    # -- the parts ----------------------------------------------------------------------------
    def window(self, o: OrgRun) -> tuple[int, bool]:
        ctx = self.ctx
        return window(o, self.jc, ctx.overlap_ms, ctx.cfg.jumpcloud.initial_days_back, ctx.store)

    def batcher(self) -> Batcher:
        limits = self.sink.intake.limits()
        return Batcher(limits.max_events, limits.max_bytes, self.sink.framing)

    def classifier(
        self, o: OrgRun, start: int, batcher: Batcher
    ) -> Callable[[dict, str, int, int, int], Decision]:
        ctx = self.ctx
        return classifier(
            o,
            self.shaper,
            start,
            alone_max(batcher),
            ctx.cfg.jumpcloud.json_depth,
            ctx.speed.splice,
        )

    def flow(
        self,
        fetched: Iterable,
        accepted: Callable[[list[Item]], None],
        batcher: Batcher,
        solo: OrgRun | None,
    ) -> Unroutable | None:
        """Pages of decisions through dedup, batching and delivery, each accepted batch
        handed to ``accepted`` (the checkpoint); the first unroutable element, where the
        stream stopped before it. ``solo``: the one org of this stream (whole pages count
        as fetched), None for a shared query (each routed event counts for its member)."""
        ctx = self.ctx
        pages = ctx.speed.pages(fetched)
        sender = ctx.speed.sender(self.sink, accepted, self.checkpoint.oversize)
        try:
            unroutable = self._consume(pages, sender, batcher, solo)
            if batcher.pending():
                sender.submit(BATCH, batcher.take())
            sender.finish()
        except BaseException:
            pages.stop()
            sender.finish()  # what was handed over is shipped (or the sender's error wins)
            raise
        pages.stop()
        return unroutable

    def _consume(
        self, pages: Iterable, sender: Delivery, batcher: Batcher, solo: OrgRun | None
    ) -> Unroutable | None:
        clock, deadline = self.ctx.clock, self.ctx.deadline
        add = batcher.add
        submit = sender.submit
        limit = alone_max(batcher)
        last: object = _NO_MEMBER
        pending: set[str] = set()
        shipped: dict[str, int] = {}
        remember = pending.add
        for _text, page in pages:
            _text = None  # the items own their bytes; the page text is not needed
            if solo is not None:
                solo.fetched += len(page)
            for verdict, item, o, deep in page:
                if o is not last:
                    if o is None:
                        return item  # unroutable: the stream stops before it
                    # the key -> ms dict behind state.recent; the sender adds to it once a
                    # batch is accepted, and only then drops the batch's keys from o.pending
                    # (so a key is always in one of them: test pending first)
                    last, pending, shipped = o, o.pending, o.state.recent.times
                    remember = pending.add
                if solo is None:
                    o.fetched += 1
                if verdict is SHIP:
                    key = item[1]
                    if key in pending or key in shipped:
                        o.duplicates += 1
                        continue
                    if deep or item[2] is None:
                        self.flagged(o, item, deep)
                    remember(key)
                    if len(item[0]) > limit:
                        submit(SKIP, Oversize(len(item[0]), key, item[2], o))
                        continue
                    full = add(item)
                    if full is not None:
                        submit(BATCH, full)
                        if clock() >= deadline:
                            raise BudgetReached()
                elif verdict is BEFORE_WINDOW:
                    o.duplicates += 1
                elif verdict is TOO_LARGE:
                    if item[1] in pending or item[1] in shipped:
                        o.duplicates += 1
                    else:
                        pending.add(item[1])
                        submit(SKIP, item)
                else:
                    self.dead_letter(o, item)
            page = None  # release this page before the next one is taken
            if clock() >= deadline:
                raise BudgetReached()  # also when pages hold nothing new to ship
        return None

    # -- what the steps report ----------------------------------------------------------------
    def flagged(self, o: OrgRun, item: Item, deep: bool) -> None:
        """Warnings for a new (not duplicate) event that has no readable time or is deep."""
        details = self.ctx.details
        if item.ts_ms is None:
            o.untimed += 1
            details.warn(
                "event without a readable time; shipped, remembered, the cursor does not move",
                id=item.event_id,
            )
        if deep:
            o.deep += 1
            details.warn(
                "event nested deeper than jumpcloud.json_depth; shipped whole",
                id=item.event_id,
                json_depth=self.ctx.cfg.jumpcloud.json_depth,
            )

    def dead_letter(self, o: OrgRun, defect: Defect) -> None:
        """An element that can never be shipped as an event: its exact bytes are kept in
        state_dir/dead-letter (once: a re-read finds the file and counts a duplicate), the
        stream goes on past it, and the org's totals and status say so."""
        dead_letters = self.ctx.dead_letters
        try:
            path, new = dead_letters.keep(o.org, defect.text)
        except OSError as exc:
            raise StateWriteError(
                f"cannot keep an unparsable JumpCloud event in {dead_letters.directory} "
                f"({exc.strerror or exc}); it is not skipped unkept, so the org stops here"
            ) from None
        if not new:
            o.duplicates += 1
            return
        o.dead_lettered += 1
        self.ctx.log.warning(
            f"JumpCloud sent an element that is no event ({defect.reason}); not shipped, "
            "kept as received in the dead-letter file, the stream goes on past it",
            org=o.org,
            file=path,
        )


def _before(pages: Iterable, until_ms: int) -> Iterable:
    """The pages without events stamped at or after ``until_ms``: a backfill's window is
    [since, until), whether JumpCloud's end_time includes its bound or not."""
    for text, page in pages:
        yield text, [d for d in page if d[0] is not SHIP or d[1][2] is None or d[1][2] < until_ms]


def alone_max(batcher: Batcher) -> int:
    """The largest event that fits in a batch alone (see Batcher.fits_alone)."""
    return batcher.max_bytes - batcher.overhead
