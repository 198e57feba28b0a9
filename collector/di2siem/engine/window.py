"""An org's window this turn: where its read starts, on JumpCloud's clock (never the host's,
never in the future), and the refusal to read at all when its stored position lies ahead of
that clock (``PositionAhead``)."""

from __future__ import annotations

from ..errors import PositionAhead
from ..source.client import JumpCloudClient
from ..state.store import StateStore
from ..timeutil import format_ms, now_ms
from .context import OrgRun

DAY_MS = 86_400_000
PROBE_MARGIN_MS = 3_600_000  # probe JumpCloud's clock when the window starts this recent
# a stored cursor or floor at most this far ahead of JumpCloud's clock is clock resolution
# (its Date header has whole seconds) and stays as it is; further ahead, the org fails
AHEAD_TOLERANCE_MS = 2_000


def window(
    o: OrgRun, jc: JumpCloudClient, overlap_ms: int, initial_days_back: float, store: StateStore
) -> tuple[int, bool]:
    """(start of the org's window this turn, whether it is its first), on JumpCloud's
    clock (probed once per lane when the window is recent)."""
    state = o.state
    start = state.start_ms(overlap_ms)
    first = start is None
    host_now = now_ms()
    if first:
        start = host_now + int(initial_days_back * DAY_MS)
    if jc.server_clock is None and start > host_now - PROBE_MARGIN_MS:
        # a window starting near or after the host's now: ask JumpCloud's time (the Date
        # of a one-event query), since a host clock ahead of it would ask for the future
        # and one behind it would re-read (and re-send) what is already shipped
        jc.probe(format_ms(host_now - DAY_MS), o.org)
    now = jc.server_now_ms() or now_ms()
    if first and jc.server_clock is not None:
        start = now + int(initial_days_back * DAY_MS)
    refuse_ahead(o, now, store)
    start = min(start, now)  # never ask for the future (JumpCloud's, not ours)
    return start, first


def refuse_ahead(o: OrgRun, now: int, store: StateStore) -> None:
    """PositionAhead when the org's cursor or floor lies ahead of JumpCloud's now (left by
    an older version, a migrated state, a hand-edited file): never pulled back to now,
    which would skip everything between the org's real position and now."""
    state = o.state
    for key, ms in (("cursor", state.cursor_ms), ("floor", state.floor_ms)):
        if ms is not None and ms > now + AHEAD_TOLERANCE_MS:
            raise PositionAhead(
                f"state of org {o.org}: {key} {format_ms(ms)} is ahead of JumpCloud's "
                f"clock ({format_ms(now)}); nothing read, since going on from now would "
                "skip the events since the org's real position. Fix: di2siem state export "
                f"--org {o.org}, set cursor and floor to the last time really shipped, "
                "di2siem state import --force that file (or delete "
                f"{store.path_of(o.org)} to start the org over from initial_days_back)"
            )


def pin_first_window(o: OrgRun, start: int, first: bool, store: StateStore) -> None:
    """After an org's first window was read to its end: pin it (a floor just before its
    start) so later runs do not slide past late events."""
    if first and o.state.cursor_ms is None and o.state.floor_ms is None:
        o.state.floor_ms = start - 1
        store.save(o.org)
