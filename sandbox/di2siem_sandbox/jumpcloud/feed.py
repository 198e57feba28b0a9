"""Filling the JumpCloud simulator's stores: given events, generated backlogs, bursts sharing one
millisecond, late indexing, and the live generator (events stamped now, at a rate)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..events import (
    DAY_MS,
    TimeLike,
    burst_events,
    iter_timed_events,
    make_event,
    make_id,
    now_ms,
    to_epoch_ms,
)
from .store import PROVIDER_PREFIX, Entry, OrgStore, to_entry


class Feed:
    """The JumpCloud simulator's event stores, one per org and one for the MSP provider's own
    events (JumpCloudSimulator sets the attributes below)."""

    org_ids: list[str]
    provider_id: str | None
    seed: int
    rate: float
    late_fraction: float
    late_delay_s: float
    _lock: threading.Lock
    _stores: dict[str, OrgStore]
    _live_stop: threading.Event
    _live_thread: threading.Thread | None

    @property
    def provider_store(self) -> str | None:
        """The store key of the provider's own events (pass it as `org=` to add/generate)."""
        return PROVIDER_PREFIX + self.provider_id if self.provider_id else None

    def _store_keys(self) -> list[str]:
        return self.org_ids + ([self.provider_store] if self.provider_store else [])

    # -- events ----------------------------------------------------------------------------
    def add_events(
        self,
        events: Iterable[dict[str, Any]],
        org: str | None = None,
        visible_after_s: float = 0,
    ) -> int:
        """Store events; returns how many were new (ids already stored are ignored).

        `org=None` files each event under its `organization` when that is a configured org,
        else under the first org. `visible_after_s > 0` models late indexing: the events are
        absent from every answer until that many seconds have passed (whatever their
        timestamp).
        """
        grouped: dict[str, list[Entry]] = {}
        for event in events:
            target = org or event.get("organization")
            if target not in self._stores:
                if org is not None:
                    raise ValueError(f"unknown org {org!r}; configured: {self._store_keys()}")
                target = self.org_ids[0]
            grouped.setdefault(target, []).append(to_entry(event))
        visible_at = time.monotonic() + visible_after_s if visible_after_s > 0 else None
        added = 0
        with self._lock:
            for target, entries in grouped.items():
                added += self._stores[target].add(entries, visible_at)
        return added

    def generate(
        self,
        count: int,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        seed: int | None = None,
        org: str | None = None,
        services: Sequence[str] | None = None,
        visible_after_s: float = 0,
        deep_every: int = 0,
    ) -> int:
        """Generate `count` events per org (`org=None`: every configured org) over
        [start, end] (default: the last 3 days up to now) and store them."""
        end_ms = to_epoch_ms(end) if end is not None else now_ms()
        start_ms = to_epoch_ms(start) if start is not None else end_ms - 3 * DAY_MS
        visible_at = time.monotonic() + visible_after_s if visible_after_s > 0 else None
        added = 0
        for target in [org] if org else self.org_ids:
            if target not in self._stores:
                raise ValueError(f"unknown org {target!r}; configured: {self._store_keys()}")
            stream = iter_timed_events(
                count,
                start_ms,
                end_ms,
                seed=self.seed if seed is None else seed,
                org=target,
                services=list(services) if services else None,
                deep_every=deep_every,
            )
            portal = target == self.provider_store
            batch: list[Entry] = []
            for epoch_ms, event in stream:
                if portal:  # the MSP portal's own events: by the provider, for no one org
                    event["organization"] = ""
                    event["provider"] = self.provider_id
                batch.append(to_entry(event, epoch_ms))
                if len(batch) >= 20000:
                    added += self._store(target, batch, visible_at)
                    batch = []
            added += self._store(target, batch, visible_at)
        return added

    def _store(self, org: str, entries: list[Entry], visible_at: float | None) -> int:
        with self._lock:
            return self._stores[org].add(entries, visible_at)

    def add_burst(
        self,
        count: int,
        at: TimeLike | None = None,
        org: str | None = None,
        seed: int | None = None,
        visible_after_s: float = 0,
    ) -> list[dict[str, Any]]:
        """Store `count` events sharing one millisecond (default: 1 minute ago); returns them."""
        target = org or self.org_ids[0]
        epoch_ms = to_epoch_ms(at) if at is not None else now_ms() - 60_000
        events = burst_events(count, epoch_ms, self.seed if seed is None else seed, target)
        self.add_events(events, target, visible_after_s)
        return events

    def clear_events(self) -> None:
        with self._lock:
            self._stores = {key: OrgStore() for key in self._store_keys()}

    def event_count(self, org: str | None = None, include_pending: bool = False) -> int:
        with self._lock:
            stores = [self._stores[org]] if org else list(self._stores.values())
            for store in stores:
                store.promote(time.monotonic())
            return sum(len(s.keys) + (len(s.pending) if include_pending else 0) for s in stores)

    # -- live generation -------------------------------------------------------------------
    def start_live(
        self, rate: float, late_fraction: float = 0.0, late_delay_s: float = 120.0
    ) -> None:
        """Append `rate` events/s stamped now; a `late_fraction` of them becomes visible only
        `late_delay_s` later (late indexing: old timestamp when they appear)."""
        self.stop_live()
        self.rate, self.late_fraction, self.late_delay_s = rate, late_fraction, late_delay_s
        self._live_stop = threading.Event()
        self._live_thread = threading.Thread(
            target=self._live_loop, name="sandbox-jumpcloud-live", daemon=True
        )
        self._live_thread.start()

    def stop_live(self) -> None:
        self._live_stop.set()
        if self._live_thread is not None:
            self._live_thread.join(timeout=5)
            self._live_thread = None

    def _live_loop(self) -> None:
        rng = random.Random(f"live:{self.seed}")
        started, produced = time.monotonic(), 0
        while not self._live_stop.wait(0.1):
            due = int((time.monotonic() - started) * self.rate) - produced
            for _ in range(max(due, 0)):
                produced += 1
                self._live_event(rng, produced)

    def _live_event(self, rng: random.Random, index: int) -> None:
        org = rng.choice(self.org_ids)
        event_id = make_id(f"live:{self.seed}:{time.time_ns()}", index)
        event = make_event(rng, now_ms(), event_id, org)
        late = rng.random() < self.late_fraction
        self.add_events([event], org, self.late_delay_s if late else 0)
