"""A simulator's request counters (GET /_sim/stats)."""

from __future__ import annotations

import threading
from typing import Any


class Stats:
    """Thread-safe request counters: by path and status, plus free-form counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._by_path: dict[str, dict[str, int]] = {}
            self._counters: dict[str, int] = {}
            self._requests = 0

    def record(self, path: str, status: int) -> None:
        with self._lock:
            self._requests += 1
            statuses = self._by_path.setdefault(path, {})
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    def incr(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + amount

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_status: dict[str, int] = {}
            for statuses in self._by_path.values():
                for status, n in statuses.items():
                    by_status[status] = by_status.get(status, 0) + n
            return {
                "requests": self._requests,
                "by_path": {p: dict(s) for p, s in self._by_path.items()},
                "by_status": by_status,
                "faults_served": 0,
                **self._counters,
            }
