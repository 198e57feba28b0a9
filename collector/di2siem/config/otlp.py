"""The ``otlp`` format's options (OTLP/HTTP logs, JSON encoding): the resource's
``service.name``. The endpoint is ``siem.url`` and credentials go in ``siem.headers``."""

from __future__ import annotations

from dataclasses import dataclass

from .intake_options import IntakeOptions
from .schema import Field, Kind, Section


@dataclass(frozen=True)
class OtlpOptions:
    service_name: str


def _parse(section: Section, values: dict) -> OtlpOptions:
    return OtlpOptions(service_name=section.read(values, "service_name"))


OTLP = IntakeOptions(
    "otlp",
    (
        Field(
            "service_name",
            Kind.TEXT,
            "jumpcloud-directory-insights",
            blank_is_default=True,
            help="`otlp`: the resource attribute `service.name` of every log record.",
        ),
    ),
    _parse,
    "`otlp` (OTLP/HTTP logs in JSON to `url`, e.g. `https://otel.example.com:4318/v1/logs`)",
)
