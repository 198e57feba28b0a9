"""How a long run is going, while it goes: for every org whose turn has lasted at least the
progress interval (``DI2SIEM_PROGRESS_SECONDS``, default 10 s), a ``progress`` log line every
interval and one when its turn ends, in the run summary's key=value style::

    progress org=acme shipped=209000 covered_until=2026-10-05T11:02:03.000Z percent=31.5
      events_per_s=14902

On a terminal, a live line under the log shows the same for every org in a turn, redrawn
every second. ``percent`` is the share of the org's window (from where its turn began to the
moment it began) that the cursor has covered: JumpCloud gives no count for free, the
cursor's time is exact.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..engine.context import OrgRun
from ..log import Logger
from ..timeutil import format_ms, now_ms

DAY_MS = 86_400_000
DEFAULT_INTERVAL_S = 10.0
LIVE_EVERY_S = 1.0


def interval_from_env() -> float:
    """DI2SIEM_PROGRESS_SECONDS when it is a positive number, else the default."""
    try:
        value = float(os.environ.get("DI2SIEM_PROGRESS_SECONDS", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_INTERVAL_S


@dataclass
class Window:
    """One org's turn: where its cursor started, the moment it began (its target)."""

    run: OrgRun
    start_ms: int
    end_ms: int
    began: float  # monotonic
    reported: bool = False  # a progress line was written for it

    def fields(self, clock: Callable[[], float]) -> dict[str, Any]:
        cursor = self.run.state.cursor_ms
        covered = self.start_ms if cursor is None else max(cursor, self.start_ms)
        span = max(1, self.end_ms - self.start_ms)
        elapsed = max(1e-3, clock() - self.began)
        return {
            "org": self.run.org,
            "shipped": self.run.shipped,
            "covered_until": format_ms(covered),
            # text: the log prints a float with three decimals
            "percent": f"{min(100.0, 100.0 * (covered - self.start_ms) / span):.1f}",
            "events_per_s": round(self.run.shipped / elapsed),
        }

    def runs_left(self) -> int | None:
        """After a turn cut by the budget: the runs still needed at this turn's pace of the
        cursor through time (None: it did not move)."""
        cursor = self.run.state.cursor_ms
        if cursor is None or cursor <= self.start_ms:
            return None
        left = max(0, now_ms() - cursor)
        return max(1, math.ceil(left / (cursor - self.start_ms)))


class Progress:
    def __init__(
        self,
        log: Logger,
        initial_days_back: float,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.initial_days_back = initial_days_back
        self.interval_s = interval_s if interval_s is not None else interval_from_env()
        self.clock = clock
        self._windows: dict[int, Window] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = True  # until the logger says this is no terminal

    def begin(self, o: OrgRun, end_ms: int | None = None) -> None:
        """The org's turn begins; its window ends now, or at ``end_ms`` (a backfill's)."""
        now = now_ms()
        state = o.state
        start = state.cursor_ms if state.cursor_ms is not None else state.floor_ms
        if start is None:
            start = now + int(self.initial_days_back * DAY_MS)
        end = now if end_ms is None else min(end_ms, now)
        with self._lock:
            self._windows[id(o)] = Window(o, start, end, self.clock())

    def end(self, o: OrgRun) -> dict[str, Any]:
        """The org's turn ended: its last progress line when it had any; the fields its run
        summary adds (a budget-cut turn: percent and the runs still needed)."""
        with self._lock:
            window = self._windows.pop(id(o), None)
        if window is None:
            return {}
        fields = window.fields(self.clock)
        if window.reported:
            self.log.info("progress", **fields, final="yes")
        if o.status != "budget":
            return {}
        extra: dict[str, Any] = {"percent": fields["percent"]}
        runs_left = window.runs_left()
        if runs_left is not None:
            extra["runs_left"] = runs_left
        return extra

    def __enter__(self) -> Progress:
        self._thread = threading.Thread(target=self._loop, name="di2siem-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._live:
            self.log.live("")

    def _loop(self) -> None:
        last_lines = self.clock()
        tick = min(LIVE_EVERY_S, self.interval_s)
        while not self._stop.wait(tick):
            with self._lock:
                windows = list(self._windows.values())
            now = self.clock()
            if self._live and windows:
                self._live = self.log.live(
                    " | ".join(_live_text(w.fields(self.clock)) for w in windows)
                )
            if now - last_lines < self.interval_s:
                continue
            last_lines = now
            for window in windows:
                if now - window.began >= self.interval_s:
                    window.reported = True
                    self.log.info("progress", **window.fields(self.clock))


def _live_text(fields: dict[str, Any]) -> str:
    return (
        f"{fields['org']}: {fields['shipped']} shipped, {fields['percent']}% "
        f"(until {fields['covered_until']}), {fields['events_per_s']} events/s"
    )
