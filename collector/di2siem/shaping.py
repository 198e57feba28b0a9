"""What one event looks like on the wire.

Every format ships the PowerShell script's event: the API event, with ``timestamp`` moved to
the end under ``siem.timestamp_field_name`` (when the names differ), then the
``custom_log_fields``; ``siem.nest_under`` nests it under one key. The intake's envelope (the
Coralogix entry, for one: intakes/coralogix.py) then wraps that text. Each event is
serialised once, compactly, to bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from .config import Config

# allow_nan=False: NaN/Infinity are not JSON, a SIEM would refuse the whole batch
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
encode = _encoder.encode
# '": ' or '", ': one C pass finding spaces (rare in compact JSON), each checked behind
# (three substring scans cost more than the rest of the splice)
_spaced_separator = re.compile(r' (?<="[:,] )').search


class Envelope(Protocol):
    """An intake's wrapping of one shaped event (intakes/base.py)."""

    def head(self, event: dict, key: str | None = None) -> Any:
        """What the envelope takes from the API event as received, before shaping changes it;
        ``key`` is the event's identity (engine/classify.py event_key) when the caller knows
        it (Elasticsearch's action line carries it)."""

    def wrap(self, text: str, ts_ms: int | None, head: Any) -> str:
        """The record for one event: ``text`` is the shaped event, ``ts_ms`` its time."""


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

    def __init__(self, cfg: Config, envelope: Envelope | None) -> None:
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
        self.fast = False
        self.nest_prefix = "{" + encode(cfg.siem.nest_under) + ":" if cfg.siem.nest_under else ""
        self.envelope = envelope
        self.envelope_head = envelope.head if envelope is not None else None

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

    def fast_bytes(
        self, event: dict, raw: str, ts_ms: int | None, key: str | None = None
    ) -> bytes | None:
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
        return self.wrap(text, ts_ms, self._head(event, key))

    def _head(self, event: dict, key: str | None) -> Any:
        head = self.envelope_head
        return None if head is None else head(event, key)

    def _serialise(self, event: dict) -> str:
        if self.rename and self.src in event:
            event[self.dst] = event.pop(self.src)
        if self.custom:
            event.update(self.custom)
        return encode_json(event)

    def wrap(self, text: str, ts_ms: int | None, head: Any = None) -> bytes:
        if self.nest_prefix:
            text = self.nest_prefix + text + "}"
        if self.envelope is not None:
            text = self.envelope.wrap(text, ts_ms, head)
        return text.encode("utf-8")

    def shape(
        self, event: dict, raw: str | None, ts_ms: int | None, key: str | None = None
    ) -> bytes:
        """Shape and serialise one event (the dict may be modified). ts_ms: epoch ms; key:
        the event's identity, for the envelope's head."""
        if self.fast and raw:
            data = self.fast_bytes(event, raw, ts_ms, key)
            if data is not None:
                return data
        head = self._head(event, key)  # before the event changes
        return self.wrap(self._serialise(event), ts_ms, head)
