"""The SIEM intakes behind one contract (base.py), and the one delivery for all of them
(delivery.py). A new intake is a module here and a line in INTAKES."""

from __future__ import annotations

from importlib import import_module

from ..config import SiemConfig
from .base import Intake

# siem.format -> "module:class" of its intake, imported only when a run uses it (a run ships
# to one intake; importing all of them would cost every run their start-up time)
INTAKES: dict[str, str] = {
    "json_lines": "generic:JsonLines",
    "json_array": "generic:JsonArray",
    "coralogix": "coralogix:CoralogixSingles",
    "otlp": "otlp:Otlp",
    "elasticsearch": "elasticsearch:Elasticsearch",
    "sentinel": "sentinel:Sentinel",
    "splunk_hec": "splunk_hec:SplunkHec",
    "syslog": "syslog:Syslog",
}


def intake_class(fmt: str) -> type[Intake]:
    module, _, name = INTAKES[fmt].partition(":")
    return getattr(import_module(f"{__name__}.{module}"), name)


def intake_for(cfg: SiemConfig) -> Intake:
    """The intake of ``siem.format`` (config/siem.py only lets known formats through)."""
    return intake_class(cfg.format)(cfg)
