"""The generic HTTP intakes of the legacy script: ``json_lines`` (one event per line) and
``json_array`` (one JSON array per batch), to any URL (Coralogix's legacy /logs/datastream
among them), with the method, Content-Type and extra headers the configuration gives."""

from __future__ import annotations

from ..batching import JSON_ARRAY, JSON_LINES
from .base import Intake

GENERIC_OPTIONS = ("url", "region", "method", "headers", "content_type")


class JsonLines(Intake):
    name = "json_lines"
    options = GENERIC_OPTIONS
    framing = JSON_LINES

    def probe_body(self) -> bytes:
        return b""  # no line at all


class JsonArray(Intake):
    name = "json_array"
    options = GENERIC_OPTIONS
    framing = JSON_ARRAY
