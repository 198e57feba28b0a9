"""The ``splunk_hec`` format's options (Splunk HTTP Event Collector): the token, the envelope's
metadata and indexer acknowledgement. The endpoint is ``siem.url``: a base URL without a path
gets ``/services/collector/event``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError
from .intake_options import IntakeOptions
from .schema import Field, Kind, Secret, Section

EVENT_PATH = "/services/collector/event"


@dataclass(frozen=True)
class SplunkHecOptions:
    token: str
    index: str | None
    source: str | None
    sourcetype: str
    host: str | None
    ack: bool
    ack_timeout_seconds: float
    ack_poll_seconds: float
    max_unacknowledged_batches: int


def event_url(url: str) -> str:
    """``url`` as given, or with ``/services/collector/event`` when it has no path."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=EVENT_PATH))
    return url


def _parse(section: Section, values: dict) -> SplunkHecOptions:
    token = section.read(values, "token")
    if not token:
        raise ConfigError(
            section.prefix + "token",
            'required for siem.format "splunk_hec" (the HEC token)',
            f"set {section.prefix}token in the credentials file",
        )
    section.refuse_short_secret("token", token)
    return SplunkHecOptions(
        token=token,
        index=section.read(values, "index") or None,
        source=section.read(values, "source") or None,
        sourcetype=section.read(values, "sourcetype"),
        host=section.read(values, "host") or None,
        ack=section.read(values, "ack"),
        ack_timeout_seconds=section.read(values, "ack_timeout_seconds"),
        ack_poll_seconds=section.read(values, "ack_poll_seconds"),
        max_unacknowledged_batches=section.read(values, "max_unacknowledged_batches"),
    )


SPLUNK_HEC = IntakeOptions(
    "splunk_hec",
    (
        Field(
            "token",
            Kind.TEXT,
            secret=Secret.KEY,
            help="`splunk_hec`: the HEC token, sent as `Authorization: Splunk <token>`. Secret.",
            shown_default="none",
        ),
        Field(
            "index", Kind.TEXT, help="`splunk_hec`: the envelope's `index`.", shown_default="none"
        ),
        Field(
            "source", Kind.TEXT, help="`splunk_hec`: the envelope's `source`.", shown_default="none"
        ),
        Field(
            "sourcetype",
            Kind.TEXT,
            "jumpcloud:directory_insights",
            blank_is_default=True,
            help="`splunk_hec`: the envelope's `sourcetype`.",
        ),
        Field("host", Kind.TEXT, help="`splunk_hec`: the envelope's `host`.", shown_default="none"),
        Field(
            "ack",
            Kind.BOOLEAN,
            False,
            help=(
                "`splunk_hec`: indexer acknowledgement (the token must have it): a batch counts "
                "as delivered only once `/services/collector/ack` says it is indexed."
            ),
        ),
        Field(
            "ack_timeout_seconds",
            Kind.FLOAT,
            300,
            lo=0.1,
            hi=86400,
            help=(
                "`splunk_hec` with `ack`: a batch still unacknowledged this long is sent "
                "again (0.1..86400)."
            ),
        ),
        Field(
            "ack_poll_seconds",
            Kind.FLOAT,
            10,
            lo=0.01,
            hi=600,
            advanced=True,
            help=(
                "`splunk_hec` with `ack`: how often the acknowledgements are asked for (0.01..600)."
            ),
        ),
        Field(
            "max_unacknowledged_batches",
            Kind.INTEGER,
            1,
            lo=1,
            hi=100,
            help=(
                "`splunk_hec` with `ack`: at most this many batches wait for their "
                "acknowledgement at once (and so at most this many are sent again after a "
                "kill). 1..100."
            ),
        ),
    ),
    _parse,
    "`splunk_hec` (Splunk HTTP Event Collector at `url`, e.g. `https://splunk.example.com:8088`)",
)
