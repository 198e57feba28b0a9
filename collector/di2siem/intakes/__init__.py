"""The SIEM intakes behind one contract (base.py), and the one delivery for all of them
(delivery.py). A new intake is a module here and a line in INTAKES."""

from __future__ import annotations

from ..config import SiemConfig
from .base import Intake
from .coralogix import CoralogixSingles
from .elasticsearch import Elasticsearch
from .generic import JsonArray, JsonLines
from .otlp import Otlp
from .sentinel import Sentinel
from .splunk_hec import SplunkHec
from .syslog import Syslog

INTAKES: dict[str, type[Intake]] = {
    kind.name: kind
    for kind in (
        JsonLines,
        JsonArray,
        CoralogixSingles,
        Otlp,
        Elasticsearch,
        Sentinel,
        SplunkHec,
        Syslog,
    )
}


def intake_for(cfg: SiemConfig) -> Intake:
    """The intake of ``siem.format`` (config/siem.py only lets known formats through)."""
    return INTAKES[cfg.format](cfg)
