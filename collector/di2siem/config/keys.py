"""Unknown configuration keys: a typo such as ``siem.batchsize`` must not pass in silence
(``check`` refuses it, ``run`` warns and goes on).

The known keys are the declared ones (schema.py): the top level's fields and sections, and
each section's fields. Free-form objects (``siem.headers``, ``siem.custom_log_fields``) and
the legacy ``state`` object are not checked.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable

from .schema import Section


def unknown_keys(raw: dict, top: Section) -> list[str]:
    """One line per key not declared, naming its path and the closest known key: the top
    level's, then those of each object in it (an undeclared object's keys are all unknown).
    The caller says what follows (refused, or ignored)."""
    lines = _unknown(raw, top.keys, "")
    for key, value in raw.items():
        if isinstance(value, dict) and key not in top.unchecked:
            section = top.subsection(key)
            lines.extend(_unknown(value, section.keys if section else (), key + "."))
    return lines


def _unknown(values: dict, declared: Iterable[str], prefix: str) -> list[str]:
    lines = []
    known = sorted(declared)
    for key in values:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        name = key if key.isprintable() and " " not in key else json.dumps(key)
        lines.append(f"{prefix}{name} is not a known key{hint}")
    return lines
