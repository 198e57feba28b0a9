"""The per-event step, run while a page is parsed (jumpcloud.split_page's transform): one
event in, one ``Decision`` out, with the event shaped into the bytes the SIEM receives.

No per-event dict or text outlives the parse. With ``splice`` (overlap.Speed), events whose
page text is already what we would serialise are spliced from that text instead of being
re-serialised (shaping.Shaper.fast_bytes); both give the same bytes.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from ..batching import Item, Oversize
from ..shaping import Shaper, too_deep
from ..source.pages import NONSTANDARD
from ..timeutil import MAX_MS, parse_ms
from .context import OrgRun
from .decisions import BEFORE_WINDOW, DEAD_LETTER, SHIP, TOO_LARGE, Decision, Defect

DIGEST_PREFIX = "blake2b:"  # event keys of id-less events; JumpCloud ids are 24 hex digits

Classifier = Callable[[dict, str, int, int, int], Decision]


def event_key(event_id: object, raw: str) -> str:
    """An event's identity: its id, else a digest of its exact text (a stable key for
    events the API sends without one, so the id memory covers them too)."""
    if type(event_id) is str and event_id:
        return event_id
    if type(event_id) is int:
        return str(event_id)
    return (
        DIGEST_PREFIX
        + hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    )


def event_time(event: dict, src: str) -> int | None:
    """The event's readable time (epoch ms) in ``src``, None when unreadable or past
    9999-12-31."""
    raw = event.get(src)
    if type(raw) is not str:
        return None
    try:
        ts = parse_ms(raw)
    except ValueError:
        return None
    return ts if ts <= MAX_MS else None


def classifier(
    o: OrgRun, shaper: Shaper, start: int, alone_max: int, json_depth: int, splice: bool
) -> Classifier:
    """Org ``o``'s per-event step for a window starting at ``start``: SHIP (shaped, ready to
    batch; ``deep`` when nested past json_depth), BEFORE_WINDOW, or TOO_LARGE for an event
    whose text alone is over ``alone_max`` bytes (measured without shaping it: no copies of
    a huge event). Duplicates are told later, by the stream, which knows what was shipped."""
    src = shaper.src
    fast_bytes = shaper.fast_bytes
    shape = shaper.shape
    size_floor = shaper.size_floor
    # the event object itself accounts for one bracket
    bracket_bound = json_depth + 1
    new = tuple.__new__  # skips NamedTuple's argument handling: this runs per event
    nonstandard = NONSTANDARD
    seen_nonstandard = [nonstandard[0]]
    before_window = Decision(BEFORE_WINDOW, None, o)

    def classify(event: dict, text: str, s: int, e: int, index: int) -> Decision:
        if index == 0:
            shaper.begin_page(event, text[s:e])
        event_id = event.get("id")
        if type(event_id) is not str or not event_id:
            event_id = event_key(event_id, text[s:e])
        raw_ts = event.get(src)
        ts = None
        if type(raw_ts) is str:
            try:
                ts = parse_ms(raw_ts)
            except ValueError:
                pass
            else:
                if ts < start:
                    return before_window
                if ts > MAX_MS:
                    ts = None  # past 9999-12-31: not a time the state can hold
        if e - s > alone_max:
            nbytes = size_floor(event)
            if nbytes > alone_max:
                return Decision(TOO_LARGE, Oversize(nbytes, event_id, ts, o), o)
        # cheap bound first: fewer brackets than the limit means it cannot be too deep
        deep = text.count("{", s, e) + text.count("[", s, e) > bracket_bound and too_deep(
            event, json_depth
        )
        if nonstandard[0] != seen_nonstandard[0]:
            # NaN/Infinity or an over-long integer in this event: its text is not JSON a
            # SIEM takes as is, so it is re-serialised (see shaping.encode_json)
            seen_nonstandard[0] = nonstandard[0]
            data = None
        else:
            data = fast_bytes(event, text[s:e], ts, event_id) if splice and shaper.fast else None
        if data is None:
            data = shape(event, None, ts, event_id)
        # Decision's layout as a plain tuple: a NamedTuple's construction is a call per event
        return (SHIP, new(Item, (data, event_id, ts, o)), o, deep)

    return classify


def dead_letters_of(o: OrgRun) -> Callable[[str, str], Decision]:
    """Org ``o``'s answer to an element that can never be an event: DEAD_LETTER."""

    def defect(text: str, reason: str) -> Decision:
        return Decision(DEAD_LETTER, Defect(text, reason), o)

    return defect
