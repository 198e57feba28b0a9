"""Coralogix's /logs/v1/singles intake: each event is the ``text`` of an entry that carries
``applicationName``, ``subsystemName``, a severity (fixed, or per event with
``siem.severity: "auto"``), the event time as ``timestamp`` (epoch ms) and ``category`` /
``className`` / ``computerName`` taken from the event; authenticated by the Send-Your-Data key
as a Bearer token. (The legacy /logs/datastream takes the generic formats: generic.py.)"""

from __future__ import annotations

from typing import Any

from ..batching import JSON_ARRAY
from ..config import SiemConfig
from ..shaping import encode
from ..timeutil import now_ms
from .base import Intake
from .severity import auto_severity


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


class SinglesEnvelope:
    """The /logs/v1/singles entry around one shaped event."""

    def __init__(self, s: SiemConfig) -> None:
        self.severity = s.severity
        self.severity_auto = s.severity_auto
        names = (
            '{"applicationName":'
            + encode(s.application_name)
            + ',"subsystemName":'
            + encode(s.subsystem_name)
            + ',"severity":'
        )
        self.names = names
        # the entry up to its timestamp value, when the severity is fixed
        self.prefix = names + str(s.severity) + ',"timestamp":'
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

    def head(self, event: dict, key: str | None = None) -> tuple[str, str]:
        """From the API event as received: (the entry up to its timestamp value, the entry
        fields that follow it)."""
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

    def wrap(self, text: str, ts_ms: int | None, head: tuple[str, str] | None) -> str:
        prefix, fields = head or (self.prefix, "")
        ts = str(ts_ms if ts_ms is not None else now_ms())
        return prefix + ts + fields + ',"text":' + text + "}"


class CoralogixSingles(Intake):
    name = "coralogix"
    options = (
        "url",
        "region",
        "api_key",
        "headers",
        "method",
        "application_name",
        "subsystem_name",
        "severity",
        "severity_default",
        "category_field",
        "class_name_field",
        "computer_name_field",
    )
    framing = JSON_ARRAY

    def __init__(self, cfg: SiemConfig) -> None:
        super().__init__(cfg)
        self.envelope = SinglesEnvelope(cfg)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        headers.update(self.cfg.headers)
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        return headers
