"""The options one intake format adds to the ``siem`` section: its declared fields (checked,
documented and kept secret like every other key) and how its values become that intake's
options object (``SiemConfig.options``). Each intake's declaration is a module of its own
(otlp.py, ...), listed once in siem.py's INTAKE_OPTIONS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .schema import Field, Section


@dataclass(frozen=True)
class IntakeOptions:
    format: str
    fields: tuple[Field, ...]
    # (the siem Section, its values as given) -> the intake's frozen options object
    parse: Callable[[Section, dict], Any]
    summary: str  # the format's line in the docs' siem.format help
    # the intake's options object -> the URL batches go to, for a format whose URL follows
    # from its own options (siem.url must then be unset); None: siem.url (or siem.region)
    url: Callable[[Any], str] | None = None
    # (url, key path) -> url: the format's rule for siem.url; None: http(s) (checks.check_url)
    check_url: Callable[[str, str], str] | None = None
