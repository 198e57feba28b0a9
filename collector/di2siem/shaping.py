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
    """Turns one API event into the bytes the SIEM receives.

    Fast path: when the API's own text of the event is already compact JSON identical to
    what we would serialise (checked on the first event of every page), the shaped event is
    spliced from that text (timestamp member moved, custom fields appended) instead of being
    re-serialised. Any doubt about an event falls back to the dict path; both give the same
    bytes.
    """

    def __init__(self, cfg: Config) -> None:
        self.src = cfg.jumpcloud.timestamp_field_name
        self.dst = cfg.siem.timestamp_field_name
        self.rename = self.src != self.dst
        self.custom = dict(cfg.siem.custom_log_fields)
        self.custom_keys = tuple(self.custom)
        self.custom_text = "".join(
            "," + encode(k) + ":" + encode(v) for k, v in self.custom.items()
        )
        self.src_key = encode(self.src) + ":"
        self.dst_key = encode(self.dst) + ":"
        self.depth_limit = cfg.jumpcloud.json_depth
        self.coralogix = cfg.siem.format == "coralogix"
        self.fast = False
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

    def begin_page(self, event: dict, raw: str) -> None:
        """Decide once per page whether the API text can be reused verbatim."""
        self.fast = raw == encode(event)

    def fast_value(self, event: dict) -> str | bool | None:
        """Whether this event can be spliced from its API text: False when it must be
        serialised; otherwise the time text to move (None: nothing to move)."""
        for key in self.custom_keys:
            if key in event:
                return False
        if not self.rename:
            return None
        value = event.get(self.src)
        if value is None:
            # a null time is moved by the serialiser (as legacy did): let it do so
            return False if self.src in event else None
        if type(value) is not str or self.dst in event:
            return False
        return value

    def fast_bytes(self, event: dict, raw: str, ts_ms: int | None) -> bytes | None:
        """``fast_value`` + ``splice`` + ``wrap`` in one step (the hot path of a page that
        passed ``begin_page``): the shaped bytes from the API's own text of the event, or
        None when this event must be serialised. Same bytes as ``shape``."""
        for key in self.custom_keys:
            if key in event:
                return None
        if "\n" in raw or "\r" in raw or raw[-1] != "}":
            return None
        value = event.get(self.src) if self.rename else None
        if value is None:
            if self.rename and self.src in event:
                return None  # a null time is moved by the serialiser: let it do so
            body = raw[:-1]
            extra = self.custom_text
        else:
            if type(value) is not str or self.dst in event:
                return None
            needle = f'{self.src_key}"{value}"'
            idx = raw.find(needle)
            if idx < 1 or raw.find(needle, idx + 1) >= 0:
                return None
            end = idx + len(needle)
            before = raw[idx - 1]
            if before == ",":
                body = raw[: idx - 1] + raw[end:-1]
            elif before == "{" and raw[end] == ",":
                body = raw[:idx] + raw[end + 1 : -1]
            elif before == "{" and raw[end] == "}":
                body = "{"
            else:
                return None
            extra = f',{self.dst_key}"{value}"{self.custom_text}'
        text = f"{body}{extra}}}"
        if body == "{":  # the event held only the moved time (or nothing)
            text = "{" + extra[1:] + "}" if extra else "{}"
        if self.coralogix:
            ts = ts_ms if ts_ms is not None else now_ms()
            return f'{self.prefix}{ts},"text":{text}}}'.encode()
        return text.encode()

    def splice(self, raw: str, value: str | None) -> str | None:
        """The shaped event from the API's own text, or None when in doubt."""
        if "\n" in raw or "\r" in raw or raw[-1] != "}":
            return None
        extra = self.custom_text
        body = raw[:-1]
        if value is not None:
            needle = self.src_key + '"' + value + '"'
            idx = raw.find(needle)
            if idx < 1 or raw.find(needle, idx + 1) >= 0:
                return None
            end = idx + len(needle)
            before = raw[idx - 1]
            after = raw[end]
            if before == ",":
                body = raw[: idx - 1] + raw[end:-1]
            elif before == "{" and after == ",":
                body = raw[:idx] + raw[end + 1 : -1]
            elif before == "{" and after == "}":
                body = "{"
            else:
                return None
            extra = "," + self.dst_key + '"' + value + '"' + extra
        if body == "{":
            return "{" + extra[1:] + "}" if extra else "{}"
        return body + extra + "}"

    def _serialise(self, event: dict) -> str:
        if self.rename and self.src in event:
            event[self.dst] = event.pop(self.src)
        if self.custom:
            event.update(self.custom)
        return encode(event)

    def wrap(self, text: str, ts_ms: int | None) -> bytes:
        if self.coralogix:
            ts = str(ts_ms if ts_ms is not None else now_ms())
            text = self.prefix + ts + ',"text":' + text + "}"
        return text.encode("utf-8")

    def shape(self, event: dict, raw: str | None, ts_ms: int | None) -> bytes:
        """Shape and serialise one event (the dict may be modified). ts_ms: epoch ms."""
        text = None
        if self.fast and raw:
            value = self.fast_value(event)
            if value is not False:
                text = self.splice(raw, value)
        if text is None:
            text = self._serialise(event)
        return self.wrap(text, ts_ms)

    def shape_slice(self, page: str, start: int, end: int, value, ts_ms: int | None) -> bytes:
        """Shape an event known to be spliceable (see fast_value) from the page text."""
        raw = page[start:end]
        text = self.splice(raw, value)
        if text is None:
            text = self._serialise(json.loads(raw))
        return self.wrap(text, ts_ms)
