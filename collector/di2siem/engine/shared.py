"""A shared query: a router of one JumpCloud query's events into its members' streams.

The group's orgs go in one request (one ``x-org-id`` line each), from the earliest member's
window start. Every event is routed by its ``organization`` to its member's own per-event
step (classify.py, with the member's own window start: an older event is already covered),
and from there on it is that member's as in a stream of its own: the same loop (stream.py)
drops the member's duplicates, and batches (which may mix members: the shipped shape does
not depend on the org) are recorded per member once the SIEM accepted them (cursor moved to
the member's own events' times within JumpCloud's clock). A member without events in the
answer keeps its cursor.

An event this router cannot route (no ``organization``, one the query did not name, or an
element that is no event at all, whose org cannot be read) is never guessed: the stream stops
before it, what was accepted stays recorded, and the caller serves the members alone
(``unroutable``). Everything after that event is re-read by those solo streams, since no
member's cursor passed it (the stream is ascending).

A member whose events in the query pass LEAVE_AFTER_PAGES pages' worth (``page_size``
each) has a backlog that would hold the others back: the stream stops before its next event
in the same way (``left`` names it), and the caller serves the other members together again
and that one alone (scheduler/turn.py), each from what its state recorded.
"""

from __future__ import annotations

from ..errors import PositionAhead
from ..timeutil import format_ms
from .classify import event_key, event_time
from .context import OrgRun
from .decisions import FOREIGN, LEFT, MISSING, UNPARSABLE, UNROUTABLE, Decision, Unroutable
from .stream import Stream
from .window import pin_first_window

LEAVE_AFTER_PAGES = 5


class SharedQuery:
    """One shared query's turn over a lane's stream."""

    def __init__(self, stream: Stream, runs: list[OrgRun]) -> None:
        self.stream = stream
        self.runs = runs
        self.unroutable: Unroutable | None = None
        self.left: str | None = None  # the member with a large backlog, when one left

    def run(self) -> None:
        stream = self.stream
        ctx = stream.ctx
        windows = {}
        for o in self.runs:
            try:
                windows[o.org] = stream.window(o)
            except PositionAhead as exc:  # that member alone fails; the others are served
                o.end("failed", exc)
                ctx.log.error(str(exc), org=o.org)
        if not windows:
            return
        self.runs = [o for o in self.runs if o.org in windows]
        start = min(start for start, _ in windows.values())
        batcher = stream.batcher()
        members = {o.org: stream.classifier(o, windows[o.org][0], batcher) for o in self.runs}
        shaper = stream.shaper
        src = shaper.src
        routed = dict.fromkeys(members, 0)
        large = LEAVE_AFTER_PAGES * ctx.cfg.jumpcloud.page_size

        def route(event: dict, text: str, s: int, e: int, index: int) -> Decision:
            org = event.get("organization")
            member = members.get(org) if type(org) is str else None
            if member is None:
                if index == 0:
                    shaper.begin_page(event, text[s:e])
                reason = MISSING if org is None or org == "" else FOREIGN
                key = event_key(event.get("id"), text[s:e])
                return Decision(UNROUTABLE, Unroutable(key, event_time(event, src), reason), None)
            count = routed[org] = routed[org] + 1
            if count > large and self.left is None:
                self.left = org
                if index == 0:
                    shaper.begin_page(event, text[s:e])
                key = event_key(event.get("id"), text[s:e])
                return Decision(UNROUTABLE, Unroutable(key, event_time(event, src), LEFT), None)
            return member(event, text, s, e, index)

        def defect(text: str, reason: str) -> Decision:
            # whose it is cannot be read: the members' own streams dead-letter it
            return Decision(UNROUTABLE, Unroutable(event_key(None, text), None, UNPARSABLE), None)

        fetched = stream.jc.pages(format_ms(start), tuple(members), route, defect)
        accepted = stream.checkpoint.accepted_by_member
        self.unroutable = stream.flow(fetched, accepted, batcher, solo=None)
        for o in self.runs:
            pin_first_window(o, *windows[o.org], ctx.store)
