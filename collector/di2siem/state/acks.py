"""The batches a SIEM took but has not acknowledged yet (Splunk HEC indexer acknowledgement),
kept in ``state_dir`` so that a run ending (or killed) while it waits leaves them for the next
run: each batch's channel, ack id, when it was sent and its events' keys.

The file is replaced atomically (temp file, fsync, os.replace) at every change, under one lock
shared by the run's lanes. An entry is ``acked`` once the SIEM confirmed it but its events are
not recorded yet (a later run records them when it reads them again, without sending them).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

from ..errors import StateWriteError
from .atomicfile import replace_file

VERSION = 1
# a confirmed entry whose events never come back (already recorded when the run that
# confirmed it was killed) is forgotten after this long
CONFIRMED_KEPT_S = 7 * 86400.0


@dataclass
class Waiting:
    channel: str
    ack_id: int
    sent_s: float  # wall clock (time.time) when the batch was last sent
    keys: set[str] = field(default_factory=set)
    acked: bool = False

    def json(self) -> dict:
        return {
            "channel": self.channel,
            "ack_id": self.ack_id,
            "sent": round(self.sent_s, 3),
            "acked": self.acked,
            "keys": sorted(self.keys),
        }


def _entry(raw: object) -> Waiting | None:
    if not isinstance(raw, dict):
        return None
    channel, ack_id, sent, keys = (raw.get(k) for k in ("channel", "ack_id", "sent", "keys"))
    if not isinstance(channel, str) or type(ack_id) is not int:
        return None
    if not isinstance(sent, (int, float)) or not isinstance(keys, list):
        return None
    return Waiting(
        channel,
        ack_id,
        float(sent),
        {k for k in keys if isinstance(k, str)},
        raw.get("acked") is True,
    )


class AckLedger:
    """The run's waiting batches (``current``) and the ones earlier runs left (``previous``,
    read once). ``path`` None: kept in memory only (``di2siem check``)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.current: list[Waiting] = []
        self.previous: list[Waiting] | None = None  # None until read
        self.resolved = False  # the previous entries were asked about in this run
        self.confirmed: set[str] = set()  # keys of confirmed previous entries, not recorded

    def load_previous(self) -> list[Waiting]:
        with self.lock:
            if self.previous is None:
                self.previous = self._read()
                now = time.time()
                self.previous = [
                    w for w in self.previous if not (w.acked and now - w.sent_s > CONFIRMED_KEPT_S)
                ]
            return self.previous

    def _read(self) -> list[Waiting]:
        if self.path is None:
            return []
        try:
            with open(self.path, "rb") as fh:
                data = json.loads(fh.read(64 * 1024 * 1024))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # unreadable: its batches are re-sent (the cursor never passed them)
        entries = data.get("batches") if isinstance(data, dict) else None
        found = [_entry(raw) for raw in entries] if isinstance(entries, list) else []
        return [w for w in found if w is not None]

    def save(self) -> None:
        """Write every entry (call with the lock held)."""
        if self.path is None:
            return
        entries = [w.json() for w in (self.previous or []) + self.current]
        try:
            if not entries:
                if os.path.exists(self.path):
                    os.unlink(self.path)
                return
            data = json.dumps({"version": VERSION, "batches": entries}).encode()
            replace_file(self.path, data, 0o600, sync=True)
        except OSError as exc:
            raise StateWriteError(
                f"cannot keep the batches awaiting the SIEM's acknowledgement in {self.path} "
                f"({exc.strerror or exc})"
            ) from None

    def add(self, waiting: Waiting) -> None:
        with self.lock:
            self.current.append(waiting)
            self.save()

    def update(self) -> None:
        with self.lock:
            self.save()

    def remove(self, waiting: Waiting) -> None:
        with self.lock:
            self.current = [w for w in self.current if w is not waiting]
            self.save()

    def settle_previous(self, confirmed: list[Waiting], lost: list[Waiting]) -> None:
        """Previous entries the SIEM confirmed (kept until their events are recorded) and
        ones it never will (dropped: their events are sent again as they are read again)."""
        with self.lock:
            for w in confirmed:
                w.acked = True
                self.confirmed |= w.keys
            gone = {id(w) for w in lost}
            self.previous = [w for w in self.previous or [] if id(w) not in gone]
            self.save()

    def recorded(self, keys: list[str]) -> None:
        """Confirmed previous events recorded in this run: no longer kept."""
        with self.lock:
            self.confirmed.difference_update(keys)
            for w in self.previous or []:
                w.keys.difference_update(keys)
            self.previous = [w for w in self.previous or [] if w.keys]
            self.save()
