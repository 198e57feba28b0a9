"""What one event looks like on the wire.

Legacy formats (json_lines / json_array) reproduce the PowerShell script's event: the API
event, with ``timestamp`` moved to the end under ``siem.timestamp_field_name`` (when the
names differ), then the ``custom_log_fields``. Coralogix format wraps that same event as the
``text`` of a /logs/v1/singles entry. Each event is serialised once, compactly, to bytes.
"""

from __future__ import annotations

import json
from typing import Any

from .config import Config
from .timeutil import now_ms

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
encode = _encoder.encode


def _exceeds(obj: Any, level: int, limit: int) -> bool:
    values = obj.values() if isinstance(obj, dict) else obj
    for value in values:
        if isinstance(value, (dict, list)) and (
            level + 1 > limit or _exceeds(value, level + 1, limit)
        ):
            return True
    return False


def too_deep(event: dict, limit: int) -> bool:
    """True when a nested object/array sits deeper than ``limit`` levels below the event
    (PowerShell's ConvertTo-Json -Depth would have flattened it to a string)."""
    return _exceeds(event, 0, limit)


class Shaper:
    def __init__(self, cfg: Config) -> None:
        self.src = cfg.jumpcloud.timestamp_field_name
        self.dst = cfg.siem.timestamp_field_name
        self.rename = self.src != self.dst
        self.custom = dict(cfg.siem.custom_log_fields)
        self.depth_limit = cfg.jumpcloud.json_depth
        self.coralogix = cfg.siem.format == "coralogix"
        s = cfg.siem
        self.prefix = (
            '{"applicationName":'
            + encode(s.application_name)
            + ',"subsystemName":'
            + encode(s.subsystem_name)
            + ',"severity":'
            + str(s.severity)
            + ',"timestamp":'
        )

    def shape(self, event: dict, ts_ms: int | None) -> bytes:
        """Shape (in place) and serialise one event. ts_ms: the event time, epoch ms."""
        if self.rename and self.src in event:
            event[self.dst] = event.pop(self.src)
        if self.custom:
            event.update(self.custom)
        text = encode(event)
        if self.coralogix:
            ts = str(ts_ms if ts_ms is not None else now_ms())
            text = self.prefix + ts + ',"text":' + text + "}"
        return text.encode("utf-8")
