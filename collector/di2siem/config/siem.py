"""The ``siem`` section: its declared keys, the SiemConfig they become, and the rules a
declaration cannot say (the URL from a Coralogix region, headers, severity, the Coralogix key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, shown
from .checks import TCHAR, check_ca_bundle, check_header_value, check_url
from .coralogix import coralogix_domain
from .elasticsearch import ELASTICSEARCH
from .intake_options import IntakeOptions
from .legacy import legacy_name_defaults
from .otlp import OTLP
from .schema import Field, Kind, Secret, Section
from .sentinel import SENTINEL
from .splunk_hec import SPLUNK_HEC
from .syslog import SYSLOG

# the formats whose options are declared in their own module (the legacy formats' and
# Coralogix's are the fields below)
INTAKE_OPTIONS: dict[str, IntakeOptions] = {
    o.format: o for o in (OTLP, ELASTICSEARCH, SENTINEL, SPLUNK_HEC, SYSLOG)
}
FORMATS = ("json_lines", "json_array", "coralogix", *INTAKE_OPTIONS)
METHODS = ("POST", "PUT", "PATCH")
SEVERITY_NAMES = {
    "debug": 1,
    "verbose": 2,
    "info": 3,
    "information": 3,
    "warning": 4,
    "warn": 4,
    "error": 5,
    "critical": 6,
}

SIEM = Section(
    "siem",
    (
        Field(
            "format",
            Kind.CHOICE,
            "json_lines",
            choices=FORMATS,
            help=(
                "`json_lines` (one event per line, the legacy default), `json_array` (one JSON "
                "array per batch), `coralogix` (POST `/logs/v1/singles` entries), "
                + ", ".join(o.summary for o in INTAKE_OPTIONS.values())
                + "."
            ),
        ),
        Field(
            "url",
            Kind.TEXT,
            help=(
                "Where batches are sent. Required unless `region` is given; unset for "
                "`sentinel` (derived from its `endpoint`). `http://` only for loopback hosts "
                "(127.0.0.0/8, ::1, localhost). `syslog`: `tls://host:port` (port 6514 unless "
                "given; `tcp://host:port` only for loopback hosts)."
            ),
            shown_default="derived from `region`",
        ),
        Field(
            "region",
            Kind.TEXT,
            help=(
                "Coralogix region code (`EU1`, `US2`, ...), Coralogix domain "
                "(`eu1.coralogix.com`), account UI host (`coralogix.com`, `app.coralogix.us`, "
                "...) or your team's login URL as you paste it (`https://acme.app.coralogix.us/`,"
                " `acme.coralogix.com`, `https://acme.app.eu2.coralogix.com/#/dashboards`: "
                "scheme, port, path, query and fragment are dropped, then the team name in front "
                "of the UI host). Gives `https://ingress.<domain>/logs/v1/singles` for "
                "`coralogix`, `https://ingress.<domain>/logs/datastream` for the legacy formats. "
                "`url` wins when both are set. See the table below."
            ),
            shown_default="none",
        ),
        Field(
            "api_key",
            Kind.TEXT,
            secret=Secret.KEY,
            help=(
                "Coralogix Send-Your-Data key, sent as `Authorization: Bearer <key>`; required "
                "for `coralogix` (unless `headers` carries an `Authorization`). `elasticsearch`: "
                "the API key's encoded value, sent as `Authorization: ApiKey <value>`. Secret."
            ),
            shown_default="none",
        ),
        Field(
            "application_name",
            Kind.TEXT,
            "jumpcloud",
            help="Coralogix `applicationName`.",
            shown_default="`custom_log_fields.reqHost`, else `jumpcloud`",
        ),
        Field(
            "subsystem_name",
            Kind.TEXT,
            "directory-insights",
            help="Coralogix `subsystemName`.",
            shown_default="`custom_log_fields.customField`, else `directory-insights`",
        ),
        Field(
            "severity",
            Kind.SEVERITY,
            3,
            help=(
                "`coralogix`: severity 1..6 or a name: `debug` 1, `verbose` 2, `info` 3, "
                '`warning` 4, `error` 5, `critical` 6; or `"auto"`: each event gets its own level'
                " (see below)."
            ),
        ),
        Field(
            "severity_default",
            Kind.SEVERITY,
            3,
            help=(
                'With `severity: "auto"`: the level of events that have none of their own (1..6 '
                "or a name)."
            ),
        ),
        Field(
            "category_field",
            Kind.FIELD_NAME,
            "service",
            help=(
                "`coralogix`: the event field copied into the entry's `category` (Coralogix "
                'indexes it). Dots reach into objects (`initiated_by.email`). `""` or `null`: no '
                "`category`. An event whose field is missing, empty or not a string gets none."
            ),
        ),
        Field(
            "class_name_field",
            Kind.FIELD_NAME,
            "event_type",
            help="The same for `className`.",
        ),
        Field(
            "computer_name_field",
            Kind.FIELD_NAME,
            "organization",
            help="The same for `computerName`.",
        ),
        Field(
            "nest_under",
            Kind.FIELD_NAME,
            help=(
                'Every format: ship each event nested under this one key, `{"jumpcloud": '
                '{...event..., "jc_timestamp", custom fields}}`, as Coralogix\'s JumpCloud page '
                "shows it (its DataPrime queries then read `jumpcloud.event_type` ...). In "
                "`coralogix` format the nested object is the entry's `text`. Unset, the event is "
                "shipped flat, byte for byte as the legacy script posts it."
            ),
            shown_default="`null` (flat)",
        ),
        Field(
            "method",
            Kind.CHOICE,
            "POST",
            choices=METHODS,
            choices_text="POST, PUT or PATCH",
            fold="upper",
            blank_is_default=True,
            help="Legacy: `POST`, `PUT` or `PATCH`.",
        ),
        Field(
            "headers",
            Kind.OBJECT,
            {},
            secret=Secret.KEY,
            help=(
                'Legacy: extra request headers, e.g. `{"private_key": "..."}` for '
                "`/logs/datastream`. **All values are secrets.**"
            ),
        ),
        Field(
            "content_type",
            Kind.TEXT,
            "application/json",
            blank_is_default=True,
            help=(
                "Legacy: `Content-Type` of the legacy formats (`coralogix` always sends "
                "`application/json`)."
            ),
        ),
        Field(
            "batch_size",
            Kind.INTEGER,
            1000,
            lo=1,
            hi=10000,
            help="Legacy: at most this many events per request (1..10000).",
        ),
        Field(
            "max_batch_bytes",
            Kind.INTEGER,
            1_500_000,
            lo=512,
            hi=100_000_000,
            help=(
                "At most this many body bytes per request (Coralogix accepts 2 MB). A single "
                "event bigger than this (measured by di2siem, never guessed from a 413) is "
                "reported (id and size) and skipped; it is remembered, so it is not re-reported. "
                "512..100000000."
            ),
        ),
        Field(
            "batch_delay_milliseconds",
            Kind.NUMBER,
            100,
            lo=0,
            hi=60000,
            help="Legacy: pause between two requests to the SIEM (not after the last).",
        ),
        Field(
            "timestamp_field_name",
            Kind.TEXT,
            "jc_timestamp",
            help=(
                "Legacy: the event time is moved to this field (when it differs from "
                "`jumpcloud.timestamp_field_name`)."
            ),
        ),
        Field(
            "custom_log_fields",
            Kind.OBJECT,
            {},
            help=(
                "Legacy: fields added to every event (after the renamed time field). An event "
                "field of the same name is overwritten in place."
            ),
        ),
        Field(
            "timeout_seconds",
            Kind.FLOAT,
            30,
            lo=0.1,
            hi=600,
            help="Per request, the whole exchange, as for `jumpcloud`.",
        ),
        Field(
            "ca_bundle",
            Kind.TEXT,
            help="As for `jumpcloud`.",
        ),
        *(field for options in INTAKE_OPTIONS.values() for field in options.fields),
    ),
)


@dataclass(frozen=True)
class SiemConfig:
    format: str
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    content_type: str
    api_key: str | None
    application_name: str
    subsystem_name: str
    severity: int
    batch_size: int
    max_batch_bytes: int
    batch_delay_milliseconds: float
    timestamp_field_name: str
    custom_log_fields: tuple[tuple[str, Any], ...]
    timeout_seconds: float
    ca_bundle: str | None
    # coralogix format: per-event severity, and the entry fields taken from the event
    severity_auto: bool
    category_field: str | None
    class_name_field: str | None
    computer_name_field: str | None
    # every format: ship {"<nest_under>": event} instead of the flat event
    nest_under: str | None
    # the options of a format declared in its own module (INTAKE_OPTIONS), else None
    options: Any = None


def parse_siem(raw: dict) -> SiemConfig:
    sec = SIEM.values(raw, required=True)
    p = SIEM.prefix
    fmt = SIEM.read(sec, "format")
    declared = INTAKE_OPTIONS.get(fmt)
    options = declared.parse(SIEM, sec) if declared is not None else None
    url = _url(sec, fmt, declared, options)
    headers = _headers(sec)
    api_key = SIEM.read(sec, "api_key")
    SIEM.refuse_short_secret("api_key", api_key)
    if fmt == "coralogix" and not api_key:
        has_auth = any(n.lower() == "authorization" for n, _ in headers)
        if not has_auth:
            raise ConfigError(
                p + "api_key",
                'required for siem.format "coralogix" (the Send-Your-Data API key)',
                f"set {p}api_key in the file",
            )
    method = SIEM.read(sec, "method")

    severity_auto = isinstance(sec.get("severity"), str) and sec["severity"].strip() == "auto"
    if severity_auto:
        severity = _severity(sec, "severity_default", auto=False)
    else:
        severity = _severity(sec, "severity", auto=True)

    custom = sec.get("custom_log_fields")
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        raise ConfigError(p + "custom_log_fields", "must be an object of field -> value")
    app_default, sub_default = legacy_name_defaults(
        custom, SIEM.default("application_name"), SIEM.default("subsystem_name")
    )
    app = SIEM.text(sec, "application_name") or app_default
    sub = SIEM.text(sec, "subsystem_name") or sub_default

    tsf = SIEM.read(sec, "timestamp_field_name")
    if not tsf:
        raise ConfigError(p + "timestamp_field_name", "must not be empty", 'use "jc_timestamp"')
    content_type = SIEM.read(sec, "content_type")
    check_header_value(content_type, p + "content_type")

    return SiemConfig(
        format=fmt,
        url=url,
        method=method,
        headers=tuple(headers),
        content_type=content_type,
        api_key=api_key,
        application_name=app,
        subsystem_name=sub,
        severity=severity,
        batch_size=SIEM.read(sec, "batch_size"),
        max_batch_bytes=SIEM.read(sec, "max_batch_bytes"),
        batch_delay_milliseconds=SIEM.read(sec, "batch_delay_milliseconds"),
        timestamp_field_name=tsf,
        custom_log_fields=tuple(custom.items()),
        timeout_seconds=SIEM.read(sec, "timeout_seconds"),
        ca_bundle=check_ca_bundle(SIEM.read(sec, "ca_bundle"), p + "ca_bundle"),
        severity_auto=severity_auto,
        category_field=SIEM.read(sec, "category_field"),
        class_name_field=SIEM.read(sec, "class_name_field"),
        computer_name_field=SIEM.read(sec, "computer_name_field"),
        nest_under=SIEM.read(sec, "nest_under"),
        options=options,
    )


def _url(sec: dict, fmt: str, declared: IntakeOptions | None, options: Any) -> str:
    """``url``, else the ingress URL of the Coralogix ``region`` (the format picks the path);
    for a format whose URL follows from its own options, that URL (``url`` must be unset)."""
    p = SIEM.prefix
    url = SIEM.read(sec, "url")
    if declared is not None and declared.url is not None:
        if url or SIEM.read(sec, "region"):
            key = "url" if url else "region"
            raise ConfigError(
                p + key,
                f'not used by siem.format "{fmt}" (its URL follows from its own keys)',
                f"remove {p}{key}; see docs/intakes/{fmt}.md",
            )
        return check_url(declared.url(options), p + "url")
    region = SIEM.read(sec, "region")
    if not url:
        if not region:
            hint = "set siem.url" + (" or siem.region" if fmt == "coralogix" else "")
            raise ConfigError(p + "url", "required, missing or empty", hint)
        domain = coralogix_domain(region, p + "region")
        path = "/logs/v1/singles" if fmt == "coralogix" else "/logs/datastream"
        url = f"https://ingress.{domain}{path}"
    own = INTAKE_OPTIONS[fmt].check_url if fmt in INTAKE_OPTIONS else None
    return (own or check_url)(url.strip(), p + "url")


def _headers(sec: dict) -> list[tuple[str, str]]:
    """Extra request headers: HTTP token names, every value a secret."""
    p = SIEM.prefix
    headers_raw = SIEM.read(sec, "headers")
    headers: list[tuple[str, str]] = []
    if headers_raw is None:
        return headers
    if not isinstance(headers_raw, dict):
        raise ConfigError(p + "headers", "must be an object of header name -> value")
    for name, value in headers_raw.items():
        hp = f"{p}headers.{name}"
        if not name or any(c not in TCHAR for c in name):
            raise ConfigError(
                f"{p}headers.{shown(name)}" if not name.isprintable() else hp,
                "not a valid HTTP header name",
                "use letters, digits and - _ . only",
            )
        if not isinstance(value, str):
            raise ConfigError(hp, "must be a string")
        check_header_value(value, hp)
        SIEM.refuse_short_secret("headers", value, hp)  # every header value is a secret
        headers.append((name, value))
    return headers


def _severity(sec: dict, key: str, auto: bool) -> int:
    """1..6 or a severity name (a digit string counts); with ``auto`` the error says so."""
    raw = sec.get(key, SIEM.default(key))
    if isinstance(raw, str) and raw.strip().lower() in SEVERITY_NAMES:
        return SEVERITY_NAMES[raw.strip().lower()]
    value = int(raw.strip()) if isinstance(raw, str) and raw.strip().isdigit() else raw
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 6:
        also = ', or "auto" (per event)' if auto else ""
        raise ConfigError(
            SIEM.prefix + key,
            f"must be 1..6 or debug/verbose/info/warning/error/critical{also} (got {shown(raw)})",
        )
    return value
