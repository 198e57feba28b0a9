"""Unknown configuration keys: a typo such as ``siem.batchsize`` must not pass in silence.

The known keys are the ones the parser reads: ``track`` wraps the document and its sections
in dicts that remember every key looked up, so whatever key a parser learns is known at once
(no second list to keep in step). Free-form objects (``siem.headers``,
``siem.custom_log_fields``) and the legacy ``state`` object are not checked.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

UNCHECKED = frozenset({"state"})  # legacy: the PowerShell script's start_time / end_time


class _Tracked(dict):
    """A dict that records which keys were looked up."""

    def __init__(self, data: dict) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def track(raw: dict) -> dict:
    """The document, with the top level and each section recording the keys read."""
    top = _Tracked(raw)
    for key, value in raw.items():
        if isinstance(value, dict) and key not in UNCHECKED:
            dict.__setitem__(top, key, _Tracked(value))
    return top


def mark_known(section: dict, *keys: str) -> None:
    """Keys a parser reads only in some cases (still known when it does not)."""
    if isinstance(section, _Tracked):
        section.read.update(keys)


def unknown_key_warnings(top: dict) -> list[str]:
    """One line per key no parser read, naming its path and the closest known key."""
    if not isinstance(top, _Tracked):
        return []
    lines = _unknown(top, "")
    for key, value in dict.items(top):
        if isinstance(value, _Tracked):
            lines.extend(_unknown(value, key + "."))
    return lines


def _unknown(section: _Tracked, prefix: str) -> list[str]:
    lines = []
    known = sorted(k for k in section.read if isinstance(k, str))
    for key in dict.keys(section):
        if key in section.read:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        name = key if key.isprintable() and " " not in key else json.dumps(key)
        lines.append(f"{prefix}{name} is not a known key{hint}; it is ignored")
    return lines
