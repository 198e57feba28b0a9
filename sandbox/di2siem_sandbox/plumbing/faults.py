"""Injected faults: canned answers (or delays) for the next matching requests, in order."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Fault:
    """A canned answer for the next `count` matching requests (count < 0: forever).

    `status=None`, or 200 without `body`, answers normally (after `delay_s`): a slow response.
    """

    status: int | None = None
    count: int = 1
    retry_after: float | str | None = None
    path: str | None = None
    body: Any = None
    delay_s: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError("a fault is a JSON object")
        unknown = set(data) - {"status", "count", "retry_after", "path", "body", "delay_s"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    def matches(self, path: str) -> bool:
        return self.path is None or path == self.path or path.endswith(self.path)

    def replaces_answer(self) -> bool:
        return self.status is not None and not (self.status == 200 and self.body is None)

    def body_bytes(self, reason: str) -> bytes:
        if self.body is None:
            return json.dumps({"message": f"simulated fault: {self.status} {reason}"}).encode()
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class FaultQueue:
    """Faults are served in the order they were injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(path):
                    if fault.count > 0:
                        fault.count -= 1
                        if fault.count == 0:
                            del self._faults[index]
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {k: v for k, v in asdict(f).items() if not isinstance(v, bytes)}
                for f in self._faults
            ]
