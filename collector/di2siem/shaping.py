"""What one event looks like on the wire.

Legacy formats (json_lines / json_array) reproduce the PowerShell script's event: the API
event, with ``timestamp`` moved to the end under ``siem.timestamp_field_name`` (when the
names differ), then the ``custom_log_fields``; ``siem.nest_under`` nests it under one key.
Coralogix format wraps that same event as the ``text`` of a /logs/v1/singles entry, with a
severity (fixed, or per event with ``siem.severity: "auto"``) and ``category`` /
``className`` / ``computerName`` taken from the event. Each event is serialised once,
compactly, to bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .config import Config
from .timeutil import now_ms

# allow_nan=False: NaN/Infinity are not JSON, a SIEM would refuse the whole batch
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
encode = _encoder.encode
# '": ' or '", ': one C pass finding spaces (rare in compact JSON), each checked behind
# (three substring scans cost more than the rest of the splice)
_spaced_separator = re.compile(r' (?<="[:,] )').search


WARNING = 4
# an alert's own severity (alerts service) -> Coralogix level
ALERT_LEVELS = {
    "info": 3,
    "informational": 3,
    "low": 3,
    "medium": 4,
    "moderate": 4,
    "high": 5,
    "critical": 6,
}


def auto_severity(event: dict, default: int) -> int:
    """``siem.severity: "auto"``: an alert's own severity (Low 3 Info, Medium 4 Warning,
    High 5 Error, Critical 6 Critical); a failed action (``success: false``) at least
    4 Warning; everything else the configured default."""
    level = None
    own = event.get("severity")
    if type(own) is str:
        level = ALERT_LEVELS.get(own.strip().lower())
    if event.get("success") is False and (level is None or level < WARNING):
        level = WARNING
    return default if level is None else level


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


def _finite(value: Any) -> Any:
    """value with every NaN/Infinity float replaced by the string of its JSON-ish name."""
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _string_chars(value: Any) -> int:
    """Characters of all strings (keys included) in a decoded JSON value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(k) + _string_chars(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_string_chars(v) for v in value)
    return 0


def encode_json(value: Any) -> str:
    """Compact JSON; NaN/Infinity (which Python's json reads but JSON does not allow) become
    the strings "NaN", "Infinity", "-Infinity"."""
    try:
        return encode(value)
    except ValueError:
        return encode(_finite(value))


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
        self.coralogix = cfg.siem.format == "coralogix"
        self.fast = False
        s = cfg.siem
        self.nest_prefix = "{" + encode(s.nest_under) + ":" if s.nest_under else ""
        self.severity = s.severity
        self.severity_auto = s.severity_auto
        names = (
            '{"applicationName":'
            + encode(s.application_name)
            + ',"subsystemName":'
            + encode(s.subsystem_name)
            + ',"severity":'
        )
        # the entry up to its timestamp value, when the severity is fixed
        self.prefix = names + str(s.severity) + ',"timestamp":'
        self.names = names
        # category / className / computerName: (entry key, event field, the path below it
        # when dotted)
        self.entry_fields = tuple(
            (f',"{key}":', path.split(".")[0], tuple(path.split(".")[1:]))
            for key, path in (
                ("category", s.category_field),
                ("className", s.class_name_field),
                ("computerName", s.computer_name_field),
            )
            if path
        )
        self.entry_tops = tuple(top for _, top, _ in self.entry_fields)
        # the encoded members per combination of top-level values: these repeat a lot
        self.fields_cache: dict[tuple, str] = {}

    def size_floor(self, event: dict) -> int:
        """A lower bound of the bytes ``shape`` would make of this event, found without
        shaping or serialising it (no copy of a huge event): the characters of its strings,
        each of which is serialised at least whole. Renaming the time member is the only
        thing shaping can shrink."""
        shrink = max(0, len(self.src_key) - len(self.dst_key)) if self.rename else 0
        try:
            return _string_chars(event) - shrink
        except RecursionError:  # absurdly nested: let shaping measure it
            return 0

    def begin_page(self, event: dict, raw: str) -> None:
        """Decide once per page whether the API text can be reused verbatim."""
        self.fast = raw == encode_json(event)

    def fast_bytes(self, event: dict, raw: str, ts_ms: int | None) -> bytes | None:
        """The hot path of a page that passed ``begin_page``: the shaped bytes spliced from
        the API's own text of the event (time member moved, custom fields appended), or None
        when in doubt and this event must be serialised. Same bytes as serialising."""
        for key in self.custom_keys:
            if key in event:
                return None
        if "\n" in raw or "\r" in raw or raw[-1] != "}":
            return None
        # The page's first event proved the API's spelling is ours; a later event may still
        # hold what its encoder writes otherwise (Go escapes < > & U+2028 as \u003c ...; a
        # space after a separator): serialise it. Inside a string these sequences are rare, and
        # then only cost the slower path.
        if ("\\" in raw and "\\u" in raw) or _spaced_separator(raw) is not None:
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
        return self.wrap(text, ts_ms, self.head(event) if self.coralogix else "")

    def _serialise(self, event: dict) -> str:
        if self.rename and self.src in event:
            event[self.dst] = event.pop(self.src)
        if self.custom:
            event.update(self.custom)
        return encode_json(event)

    def head(self, event: dict) -> tuple[str, str]:
        """Coralogix format, from the API event as received: (the entry up to its timestamp
        value, the entry fields that follow it)."""
        if self.severity_auto:
            prefix = self.names + str(auto_severity(event, self.severity)) + ',"timestamp":'
        else:
            prefix = self.prefix
        if not self.entry_fields:
            return prefix, ""
        tops = tuple(map(event.get, self.entry_tops))
        try:
            fields = self.fields_cache.get(tops)
        except TypeError:  # an object or array value: not cacheable
            return prefix, self._fields(tops)
        if fields is None:
            fields = self._fields(tops)
            if len(self.fields_cache) < 10_000:
                self.fields_cache[tops] = fields
        return prefix, fields

    def _fields(self, tops: tuple) -> str:
        fields = ""
        for (key, _, below), value in zip(self.entry_fields, tops):
            if below:
                value = _dig(value, below)
            if type(value) is str and value:
                fields += key + encode(value)
        return fields

    def wrap(self, text: str, ts_ms: int | None, head: tuple[str, str] | str = "") -> bytes:
        if self.nest_prefix:
            text = self.nest_prefix + text + "}"
        if self.coralogix:
            prefix, fields = head or (self.prefix, "")
            ts = str(ts_ms if ts_ms is not None else now_ms())
            text = prefix + ts + fields + ',"text":' + text + "}"
        return text.encode("utf-8")

    def shape(self, event: dict, raw: str | None, ts_ms: int | None) -> bytes:
        """Shape and serialise one event (the dict may be modified). ts_ms: epoch ms."""
        if self.fast and raw:
            data = self.fast_bytes(event, raw, ts_ms)
            if data is not None:
                return data
        head = self.head(event) if self.coralogix else ""  # before the event changes
        return self.wrap(self._serialise(event), ts_ms, head)
