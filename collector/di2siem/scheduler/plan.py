"""Which orgs share one JumpCloud query this run (jumpcloud.shared_query_max_orgs).

A new org (no cursor and no floor yet: its first window is still to be read) shares with the
other new orgs: their windows all start initial_days_back before now, and a fresh MSP's
orgs, each with a few events, are then served a group per request instead of one each (a
member whose backlog turns out large leaves its group: engine/shared.py).

Any other org may share only when it is caught up, as its state file tells before the run:
- it has a cursor or a floor (not new), and its last turn reached the end of its stream
  (``ops.last_status`` "ok": not cut by the run time budget, not failed);
- its window start (max(cursor - overlap, floor + 1 ms)) is at most RECENT_MS behind now
  (the host's clock: a bound this wide does not care about ordinary skew);
- no shared query met an event it could not route since (``solo_until``: it shares again
  once its window starts after that time);
- it is a customer org named by ``x-org-id``: the default org (no org_ids) and the MSP
  portal's own stream (``provider:``, ``x-provider-id``) always get their own stream.

Caught-up orgs are sorted by window start and cut into groups of at most ``max_orgs`` whose
starts lie within SPREAD_MS of the group's earliest one (the group's start: the query re-reads
at most SPREAD_MS of a member's already-shipped events, which it skips). A group of one is a
solo turn. Turns keep the least-recently-served order: a group takes the place of its least
recently served member.
"""

from __future__ import annotations

from typing import Any, Union

from ..config import DEFAULT_ORG, PROVIDER_PREFIX
from ..timeutil import parse_ms_or_none

DAY_MS = 86_400_000
RECENT_MS = DAY_MS  # a window start older than a day: the org is not caught up
SPREAD_MS = 3_600_000  # members' window starts lie within an hour of each other
Turn = Union[str, tuple]  # one org key, or a shared query's org ids


def window_start(meta: dict[str, Any], overlap_ms: int) -> int | None:
    """The start of the org's next window from its file's cursor and floor (OrgState.start_ms)."""
    cursor = parse_ms_or_none(meta.get("cursor"))
    floor = parse_ms_or_none(meta.get("floor"))
    candidates = []
    if cursor is not None:
        candidates.append(cursor - overlap_ms)
    if floor is not None:
        candidates.append(floor + 1)
    return max(candidates) if candidates else None


def shareable_start(
    org: str, meta: dict[str, Any] | None, overlap_ms: int, now: int, initial_start: int
) -> int | None:
    """The org's window start when it may share a query (see the module doc), else None;
    ``initial_start``: where a new org's first window starts."""
    if org == DEFAULT_ORG or org.startswith(PROVIDER_PREFIX) or "," in org:
        return None
    ops = meta.get("ops") if meta is not None else None
    if meta is None or window_start(meta, overlap_ms) is None:
        # new: its first window; not one JumpCloud refused last time (its group would be
        # refused again, and then served alone, every run)
        failed = isinstance(ops, dict) and ops.get("last_status") == "failed"
        return None if failed else initial_start
    if not isinstance(ops, dict) or ops.get("last_status") != "ok":
        return None
    start = window_start(meta, overlap_ms)
    if start is None or now - start > RECENT_MS:
        return None
    solo_until = parse_ms_or_none(meta.get("solo_until"))
    if solo_until is not None and start <= solo_until:
        return None
    return start


def plan_turns(
    order: list[str],
    metas: dict[str, dict[str, Any] | None],
    overlap_ms: int,
    max_orgs: int,
    now: int,
    initial_days_back: float = 0.0,
) -> list[Turn]:
    """The run's turns in serving order: org keys (solo) and tuples of org ids (shared)."""
    if max_orgs < 2:
        return list(order)
    initial_start = now + int(initial_days_back * DAY_MS)
    starts = {}
    for org in order:
        start = shareable_start(org, metas.get(org), overlap_ms, now, initial_start)
        if start is not None:
            starts[org] = start
    groups: list[list[str]] = []
    for org in sorted(starts, key=lambda o: (starts[o], o)):
        group = groups[-1] if groups else None
        if group and len(group) < max_orgs and starts[org] - starts[group[0]] <= SPREAD_MS:
            group.append(org)
        else:
            groups.append([org])
    rank = {org: n for n, org in enumerate(order)}
    turns: list[tuple[int, Turn]] = [(rank[org], org) for org in order if org not in starts]
    for group in groups:
        members = sorted(group, key=rank.__getitem__)
        turn: Turn = tuple(members) if len(members) > 1 else members[0]
        turns.append((rank[members[0]], turn))
    turns.sort(key=lambda rt: rt[0])
    return [turn for _, turn in turns]
