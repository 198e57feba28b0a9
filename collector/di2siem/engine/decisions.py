"""The one typed answer of the per-event step: what the stream does with one element of a
JumpCloud page, decided while the page is parsed.

A ``Decision`` is (verdict, item, member, deep); its ``item`` depends on the verdict:

- ``SHIP``: an ``Item`` (shaped bytes, identity, time), batched unless it is a duplicate;
  ``deep`` says it is nested deeper than json_depth (warned about once known to be new);
- ``BEFORE_WINDOW``: None; the event lies before the org's window (already covered);
- ``TOO_LARGE``: an ``Oversize``, an event over the byte cap alone, never posted, recorded;
- ``DEAD_LETTER``: a ``Defect``, an element that can never be an event, kept as received;
- ``UNROUTABLE``: an ``Unroutable``, a shared query's event whose org cannot be told.

``member`` is the OrgRun whose stream the element belongs to (None when unroutable): a shared
query routes by it, a single org's stream has one member.

Consumers only unpack a decision: the per-event SHIP answer is built as a plain tuple in this
layout (classify.py), since constructing a NamedTuple costs a call per event.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

# why a shared query's element has no member: no organization, one the query did not
# name, or an element that is no event at all (jumpcloud.UNPARSABLE)
MISSING = "missing"
FOREIGN = "foreign"
LEFT = "left"  # a shared query's member with a large backlog: it leaves the query
UNPARSABLE = "unparsable"


class Verdict(Enum):
    SHIP = "ship"
    BEFORE_WINDOW = "before window"
    TOO_LARGE = "too large"
    DEAD_LETTER = "dead letter"
    UNROUTABLE = "unroutable"


SHIP = Verdict.SHIP
BEFORE_WINDOW = Verdict.BEFORE_WINDOW
TOO_LARGE = Verdict.TOO_LARGE
DEAD_LETTER = Verdict.DEAD_LETTER
UNROUTABLE = Verdict.UNROUTABLE


class Decision(NamedTuple):
    verdict: Verdict
    item: Any  # Item | Oversize | Defect | Unroutable | None, by verdict (module doc)
    member: Any  # the OrgRun (engine/context.py), None when unroutable
    deep: bool = False


class Defect(NamedTuple):
    """An element of a JumpCloud page that can never be an event (jumpcloud.UNPARSABLE)."""

    text: str
    reason: str


class Unroutable(NamedTuple):
    """The first event a shared query could not route: its key, its readable time, and why
    (MISSING, FOREIGN or UNPARSABLE; LEFT: its member leaves the query there)."""

    key: str
    ts_ms: int | None
    reason: str
