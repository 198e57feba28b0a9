"""Configuration: one JSON file parsed once into frozen dataclasses.

Every problem raises ConfigError naming the key path, what is wrong and how to fix it. A legacy
``configurations.json`` (the PowerShell script's file) is accepted unchanged. Nothing here
imports requests or touches the file system beyond reading the configuration file, so
``di2siem check --offline`` stays cheap and side-effect free.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from . import credentials
from .configkeys import mark_known, track, unknown_key_warnings
from .timeutil import FUTURE_MARGIN_MS, now_ms, parse_ms

JUMPCLOUD_REGIONS = {
    "us": "https://api.jumpcloud.com",
    "eu": "https://api.eu.jumpcloud.com",
    "in": "https://api.in.jumpcloud.com",
}

# The service enum of the DI API's EventQuery today (the reference lists it). JumpCloud adds
# services over time: a well-formed name not in this list is sent anyway (``check`` warns) and
# the API's own 400, which lists the supported values, stays the authority.
JUMPCLOUD_SERVICES = frozenset(
    {
        "all",
        "alerts",
        "directory",
        "ldap",
        "mdm",
        "notifications",
        "object_storage",
        "password_manager",
        "password_vault",
        "radius",
        "reports",
        "saas_app_management",
        "software",
        "sso",
        "systems",
        "access_management",
        "asset_management",
        "workflows",
        "genai",
        "aigw",
        "ai_admin",
        "generic_di",
    }
)
SERVICE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

# region code -> Coralogix domain; the UI hosts users often know map to the same domain.
CORALOGIX_REGIONS = {
    "us1": "us1.coralogix.com",
    "us2": "us2.coralogix.com",
    "us3": "us3.coralogix.com",
    "eu1": "eu1.coralogix.com",
    "eu2": "eu2.coralogix.com",
    "ap1": "ap1.coralogix.com",
    "ap2": "ap2.coralogix.com",
    "ap3": "ap3.coralogix.com",
    "gov1": "gov1.coralogixgov.us",
}
CORALOGIX_UI_HOSTS = {
    "app.coralogix.us": "us1.coralogix.com",
    "app.cx498.coralogix.com": "us2.coralogix.com",
    "app.us3.coralogix.com": "us3.coralogix.com",
    "coralogix.com": "eu1.coralogix.com",
    "app.coralogix.com": "eu1.coralogix.com",
    "app.eu2.coralogix.com": "eu2.coralogix.com",
    "app.coralogix.in": "ap1.coralogix.com",
    "coralogix.in": "ap1.coralogix.com",
    "app.coralogixsg.com": "ap2.coralogix.com",
    "coralogixsg.com": "ap2.coralogix.com",
    "app.ap3.coralogix.com": "ap3.coralogix.com",
    "app.gov1.coralogixgov.us": "gov1.coralogixgov.us",
    "coralogix.us": "us1.coralogix.com",
}

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

# Service accounts: the OAuth token host follows the API region.
JUMPCLOUD_TOKEN_URLS = {
    "us": "https://admin-oauth.id.jumpcloud.com/oauth2/token",
    "eu": "https://admin-oauth.id.eu.jumpcloud.com/oauth2/token",
    "in": "https://admin-oauth.id.in.jumpcloud.com/oauth2/token",
}
JUMPCLOUD_TOKEN_URL = JUMPCLOUD_TOKEN_URLS["us"]

FORMATS = ("json_lines", "json_array", "coralogix")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("keyvalue", "json")
DEFAULT_ORG = "_default"
PROVIDER_PREFIX = "provider:"  # state key prefix of the MSP portal's own stream
# what an org id may be: JumpCloud's are 24 hex digits; this also takes shorter test and
# sandbox ids, and keeps every org file name (orgs/<id>.json) short and free of path characters
ORG_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
ORG_ID_FORM = "1 to 64 characters of A-Z a-z 0-9 _ - (JumpCloud's are 24 hex digits)"
PROVIDER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def org_key_problem(org: str) -> str | None:
    """Why ``org`` cannot be an org key (a state file's, an import's), or None: the default org
    ``_default``, ``provider:<provider id>``, or an org id of ORG_ID_FORM."""
    if org == DEFAULT_ORG or ORG_ID_PATTERN.fullmatch(org):
        return None
    if org.startswith(PROVIDER_PREFIX) and PROVIDER_ID_PATTERN.fullmatch(
        org[len(PROVIDER_PREFIX) :]
    ):
        return None
    return f"must be {DEFAULT_ORG}, {PROVIDER_PREFIX}<provider id> or an org id of {ORG_ID_FORM}"


class ConfigError(Exception):
    """A configuration problem: which key, what is wrong, how to fix it."""

    def __init__(self, key_path: str, problem: str, fix: str = "") -> None:
        self.key_path = key_path
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self, config_path: str | None = None) -> str:
        fix = self.fix or (f"fix the value in {config_path}" if config_path else "fix the value")
        return f"{self.key_path}: {self.problem}; {fix}"


@dataclass(frozen=True)
class JumpCloudConfig:
    api_key: str | None
    base_url: str = JUMPCLOUD_REGIONS["us"]
    services: tuple[str, ...] = ("all",)
    org_ids: tuple[str, ...] = ()
    json_depth: int = 10
    timestamp_field_name: str = "timestamp"
    initial_days_back: float = -1
    page_size: int = 10000
    overlap_seconds: float = 300.0
    timeout_seconds: float = 30.0
    ca_bundle: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_url: str = JUMPCLOUD_TOKEN_URL
    provider_id: str | None = None
    max_requests_per_second: float = 5.0
    shared_query_max_orgs: int = 50

    @property
    def events_url(self) -> str:
        return self.base_url + "/insights/directory/v1/events"

    @property
    def service_account(self) -> bool:
        """OAuth client credentials (Bearer token) instead of the admin API key."""
        return bool(self.client_id)


@dataclass(frozen=True)
class SiemConfig:
    format: str
    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    api_key: str | None = None
    application_name: str = "jumpcloud"
    subsystem_name: str = "directory-insights"
    severity: int = 3
    batch_size: int = 1000
    max_batch_bytes: int = 1_500_000
    batch_delay_milliseconds: float = 100
    timestamp_field_name: str = "jc_timestamp"
    custom_log_fields: tuple[tuple[str, Any], ...] = ()
    timeout_seconds: float = 30.0
    ca_bundle: str | None = None
    # coralogix format: per-event severity, and the entry fields taken from the event
    severity_auto: bool = False
    category_field: str | None = "service"
    class_name_field: str | None = "event_type"
    computer_name_field: str | None = "organization"
    # every format: ship {"<nest_under>": event} instead of the flat event
    nest_under: str | None = None


@dataclass(frozen=True)
class Config:
    path: str
    jumpcloud: JumpCloudConfig
    siem: SiemConfig
    state_dir: str
    run_time_budget_seconds: float = 50.0
    max_retries: int = 5
    retry_base_delay_seconds: float = 1.0
    retry_max_delay_seconds: float = 60.0
    recent_ids_max: int = 100_000
    log_level: str = "info"
    legacy_end_time_ms: int | None = None
    metrics_file: str | None = None
    heartbeat_url: str | None = field(default=None, repr=False)
    log_format: str = "keyvalue"
    parallel_orgs: int = 8
    secrets: tuple[str, ...] = field(default=(), repr=False)
    credentials_file: str | None = None
    secret_files: tuple[str, ...] = ()  # config and/or credentials file: permission warnings
    # things worth telling the user that do not stop a run (check prints them, run logs them)
    warnings: tuple[str, ...] = ()

    @property
    def org_keys(self) -> tuple[str, ...]:
        """Streams with a cursor each: the orgs, then the MSP portal's own activity."""
        orgs = self.jumpcloud.org_ids or (DEFAULT_ORG,)
        provider = self.jumpcloud.provider_id
        return orgs + ((PROVIDER_PREFIX + provider,) if provider else ())


# ---------------------------------------------------------------------------------------------
# small typed readers


def _json_repr(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _section(raw: dict, key: str, path: str, required: bool) -> dict:
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(path, "missing section", f'add a "{key}" object to the file')
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be an object (got {_json_repr(value)})")
    return value


def _str(
    sec: dict, key: str, path: str, default: str | None = None, required: bool = False
) -> str | None:
    value = sec.get(key)
    if value is None or (isinstance(value, str) and not value.strip() and required):
        if required:
            raise ConfigError(path, "required, missing or empty", f"set {path} in the file")
        return default
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string (got {_json_repr(value)})")
    return value


def _secret(sec: dict, key: str, path: str, required: bool) -> str | None:
    value = sec.get(key)
    if value is None or value == "":
        if required:
            raise ConfigError(path, "required, missing or empty", f"set {path} in the file")
        return None
    if not isinstance(value, str):
        # never echo a secret-bearing value back
        raise ConfigError(path, "must be a string")
    check_header_value(value, path)
    return value


# A configured secret is redacted from every log line wherever it appears: one this short
# would also rewrite ordinary text (a 1, a quote, "info"). No real API key is this short.
SECRET_MIN_CHARS = 8


def check_secret_length(value: str, path: str) -> None:
    """Refuse a secret too short to be redacted safely (named by its key, never shown)."""
    if len(value) < SECRET_MIN_CHARS:
        raise ConfigError(
            path,
            f"shorter than {SECRET_MIN_CHARS} characters, too short for a real key (secrets "
            "are redacted from every log line, and one this short would rewrite ordinary text)",
            f"set {path} to the full key",
        )


# RFC 9110 token characters (header names)
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot travel as an HTTP header value (None: it can). Strict on
    purpose: printable ASCII with no surrounding spaces, which every real key is."""
    for position, char in enumerate(value, 1):
        if char in "\r\n":
            return f"contains a line break (character {position})"
    if value != value.strip(" \t"):
        return "starts or ends with whitespace (a space or a tab)"
    for position, char in enumerate(value, 1):
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            return f"contains a control character such as a tab (character {position})"
        if code > 0x7E:
            return f"contains a non-ASCII character (character {position})"
    return None


def check_header_value(value: str, path: str) -> None:
    """ConfigError for a value HTTP cannot carry; the value itself is never echoed."""
    problem = header_value_problem(value)
    if problem:
        raise ConfigError(
            path,
            f"{problem}, which an HTTP header cannot carry",
            f"set {path} to the exact value (printable ASCII, nothing around it)",
        )


def _number(
    sec: dict,
    key: str,
    path: str,
    default: float,
    lo: float,
    hi: float,
    integer: bool = False,
) -> Any:
    value = sec.get(key)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer and isinstance(value, float):
        ok = value.is_integer()
        value = int(value) if ok else value
    if not ok or not (lo <= value <= hi) or value != value:
        kind = "an integer" if integer else "a number"
        lo_s = int(lo) if float(lo).is_integer() else lo
        hi_s = int(hi) if float(hi).is_integer() else hi
        raise ConfigError(
            path, f"must be {kind} between {lo_s} and {hi_s} (got {_json_repr(value)})"
        )
    return value


def _str_list(sec: dict, key: str, path: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = sec.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(path, f"must be a list of non-empty strings (got {_json_repr(value)})")
    seen: list[str] = []
    for v in value:
        if v not in seen:
            seen.append(v)
    return tuple(seen)


def is_loopback_host(host: str | None) -> bool:
    """Literal 127.0.0.0/8, ::1 and ``localhost`` only: ``x.localhost`` is resolved through
    DNS like any other name, so it gets no plain-http or no-proxy exemption."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, path: str) -> str:
    """https anywhere; plain http only for loopback hosts."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(path, f"not a valid URL (got {_json_repr(url)})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(path, f"must be an https:// URL (got {_json_repr(url)})", f"fix {path}")
    if parts.username or parts.password:
        raise ConfigError(path, "must not carry credentials in the URL", "use the api_key keys")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            path,
            f"plain http:// is only allowed for loopback hosts (got host {host})",
            f"use https:// in {path}",
        )
    return url


def _ca_bundle(sec: dict, path: str) -> str | None:
    value = _str(sec, "ca_bundle", path)
    if value is None or value == "":
        return None
    if not os.path.isfile(value):
        raise ConfigError(
            path,
            f"CA bundle file not found: {value}",
            "point it at a PEM CA bundle file or remove the key",
        )
    return value


def coralogix_domain(region: str, path: str) -> str:
    """Region code, Coralogix domain, UI host or a team's login URL -> Coralogix domain.

    A login URL (``https://acme.app.eu2.coralogix.com/#/dashboards``, ``acme.coralogix.com``)
    loses its scheme, path, query, fragment and port; then the first label (the team name) is
    dropped when what is left is a known host."""
    text = region.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    for sep in "/?#":
        text = text.split(sep, 1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0].rstrip(".")
    if text.startswith("ingress."):
        text = text[len("ingress.") :]
    team_dropped = text.split(".", 1)[1] if text.count(".") >= 2 else ""
    for host in (text, team_dropped):
        if host in CORALOGIX_REGIONS:
            return CORALOGIX_REGIONS[host]
        if host in CORALOGIX_REGIONS.values():
            return host
        if host in CORALOGIX_UI_HOSTS:
            return CORALOGIX_UI_HOSTS[host]
    codes = ", ".join(c.upper() for c in CORALOGIX_REGIONS)
    raise ConfigError(
        path,
        f"unknown Coralogix region {_json_repr(region)}",
        f"use a region code ({codes}), its domain (e.g. eu1.coralogix.com), the UI host or "
        "your team's login URL (e.g. https://acme.app.coralogix.us/)",
    )


# ---------------------------------------------------------------------------------------------


def _parse_jumpcloud(raw: dict) -> JumpCloudConfig:
    sec = _section(raw, "jumpcloud", "jumpcloud", required=True)
    p = "jumpcloud."
    api_key, client_id, client_secret = _auth(sec, p)
    base_url, region = _jumpcloud_base_url(sec, p)
    token_url = _str(sec, "token_url", p + "token_url") or JUMPCLOUD_TOKEN_URLS[region]
    token_url = check_url(token_url.strip(), p + "token_url")
    services = _services(sec, p + "services")
    org_ids = _str_list(sec, "org_ids", p + "org_ids", ())
    for index, org in enumerate(org_ids):
        check_header_value(org, f"{p}org_ids[{index}]")  # sent as x-org-id
        if not ORG_ID_PATTERN.fullmatch(org) and not org.startswith(PROVIDER_PREFIX):
            raise ConfigError(
                f"{p}org_ids[{index}]",
                f"not an org id {_json_repr(org)}: must be {ORG_ID_FORM}",
                "copy the organisation id from the JumpCloud console",
            )
    if DEFAULT_ORG in org_ids or any(o.startswith(PROVIDER_PREFIX) for o in org_ids):
        raise ConfigError(
            p + "org_ids",
            f"{DEFAULT_ORG} and {PROVIDER_PREFIX}... are reserved",
            f"list real org ids (the MSP portal: {p}provider_id)",
        )
    if client_id and not org_ids:
        raise ConfigError(
            p + "org_ids",
            "required with a service account (jumpcloud.client_id): the API needs x-org-id",
            f"list the organisation id(s) the service account reads in {p}org_ids",
        )
    tsf = _str(sec, "timestamp_field_name", p + "timestamp_field_name", "timestamp")
    if not tsf:
        raise ConfigError(p + "timestamp_field_name", "must not be empty", 'use "timestamp"')
    return JumpCloudConfig(
        api_key=api_key,
        base_url=base_url,
        services=services,
        org_ids=org_ids,
        json_depth=_number(sec, "json_depth", p + "json_depth", 10, 1, 100, integer=True),
        timestamp_field_name=tsf,
        initial_days_back=_number(sec, "initial_days_back", p + "initial_days_back", -1, -3650, 0),
        page_size=_number(sec, "page_size", p + "page_size", 10000, 1, 10000, integer=True),
        overlap_seconds=float(
            _number(sec, "overlap_seconds", p + "overlap_seconds", 300, 0, 86400)
        ),
        timeout_seconds=float(_number(sec, "timeout_seconds", p + "timeout_seconds", 30, 0.1, 600)),
        ca_bundle=_ca_bundle(sec, p + "ca_bundle"),
        client_id=client_id,
        client_secret=client_secret,
        token_url=token_url,
        provider_id=_provider_id(sec, p + "provider_id"),
        max_requests_per_second=float(
            _number(sec, "max_requests_per_second", p + "max_requests_per_second", 5, 0.1, 100)
        ),
        shared_query_max_orgs=_number(
            sec, "shared_query_max_orgs", p + "shared_query_max_orgs", 50, 1, 50, integer=True
        ),
    )


def _jumpcloud_base_url(sec: dict, p: str) -> tuple[str, str]:
    """(API base URL, region code). ``base_url`` wins over ``region``; the region (which picks
    the service-account token host) is the explicit ``region``, else the one whose API host
    ``base_url`` names, else us."""
    base_url = _str(sec, "base_url", p + "base_url")
    region_raw = _str(sec, "region", p + "region")
    region = None
    if region_raw:
        region = region_raw.strip().lower()
        if region not in JUMPCLOUD_REGIONS:
            raise ConfigError(
                p + "region",
                f"must be one of us, eu, in (got {_json_repr(region_raw)})",
                f"fix {p}region or set {p}base_url",
            )
    if base_url:
        base_url = check_url(base_url.strip(), p + "base_url").rstrip("/")
        for suffix in ("/insights/directory/v1/events", "/insights/directory/v1"):
            if base_url.endswith(suffix):
                base_url = base_url[: -len(suffix)]
        if region is None:
            host = (urlsplit(base_url).hostname or "").rstrip(".")
            by_host = {urlsplit(url).hostname: code for code, url in JUMPCLOUD_REGIONS.items()}
            region = by_host.get(host, "us")
        return base_url, region
    region = region or "us"
    return JUMPCLOUD_REGIONS[region], region


def _provider_id(sec: dict, path: str) -> str | None:
    """MSP: the provider id whose Multi-Tenant Portal activity is read (x-provider-id)."""
    value = _str(sec, "provider_id", path)
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not PROVIDER_ID_PATTERN.fullmatch(value):
        raise ConfigError(
            path, f"not a provider id {_json_repr(value)}", "copy the id from the MSP portal"
        )
    return value


def _services(sec: dict, path: str) -> tuple[str, ...]:
    """Service names as given: a malformed name is refused, an unknown well-formed one is
    kept (JumpCloud adds services; its 400 lists the supported ones), see unknown_services."""
    services = _str_list(sec, "services", path, ("all",))
    if not services:
        raise ConfigError(path, "must not be empty", 'use ["all"]')
    for name in services:
        if not SERVICE_NAME.fullmatch(name):
            raise ConfigError(
                path,
                f"not a service name {_json_repr(name)} (lower-case letters, digits, _)",
                "use names from: " + ", ".join(sorted(JUMPCLOUD_SERVICES)),
            )
    if "all" in services and len(services) > 1:
        services = ("all",)
    return services


def unknown_services(services: tuple[str, ...]) -> list[str]:
    return [s for s in services if s not in JUMPCLOUD_SERVICES]


def _auth(sec: dict, p: str) -> tuple[str | None, str | None, str | None]:
    """Exactly one mode: the admin API key, or a service account (client id + secret)."""
    api_key = _secret(sec, "api_key", p + "api_key", required=False)
    client_id = _secret(sec, "client_id", p + "client_id", required=False)
    client_secret = _secret(sec, "client_secret", p + "client_secret", required=False)
    for value, key in ((api_key, "api_key"), (client_secret, "client_secret")):
        if value:
            check_secret_length(value, p + key)
    both = f"set either {p}api_key or {p}client_id + {p}client_secret"
    if api_key and (client_id or client_secret):
        raise ConfigError(
            p + "api_key",
            f"set together with the service account keys ({p}client_id / {p}client_secret)",
            f"use one auth mode: {both}, not both",
        )
    if not api_key and not client_id and not client_secret:
        raise ConfigError(
            p + "api_key",
            "required, missing or empty",
            f"set {p}api_key (admin API key), or {p}client_id + {p}client_secret (service account)",
        )
    if client_id and not client_secret:
        raise ConfigError(
            p + "client_secret",
            f"required with {p}client_id, missing or empty",
            f"set {p}client_secret (the service account's secret)",
        )
    if client_secret and not client_id:
        raise ConfigError(
            p + "client_id",
            f"required with {p}client_secret, missing or empty",
            f"set {p}client_id (the service account's client id)",
        )
    return api_key, client_id, client_secret


def _parse_siem(raw: dict, jc: JumpCloudConfig) -> SiemConfig:
    sec = _section(raw, "siem", "siem", required=True)
    p = "siem."
    fmt = _str(sec, "format", p + "format", "json_lines")
    if fmt not in FORMATS:
        raise ConfigError(
            p + "format",
            f"must be one of {', '.join(FORMATS)} (got {_json_repr(fmt)})",
        )
    url = _str(sec, "url", p + "url")
    region = _str(sec, "region", p + "region")
    if not url:
        if not region:
            hint = "set siem.url" + (" or siem.region" if fmt == "coralogix" else "")
            raise ConfigError(p + "url", "required, missing or empty", hint)
        domain = coralogix_domain(region, p + "region")
        path = "/logs/v1/singles" if fmt == "coralogix" else "/logs/datastream"
        url = f"https://ingress.{domain}{path}"
    url = check_url(url.strip(), p + "url")

    headers_raw = sec.get("headers")
    headers: list[tuple[str, str]] = []
    if headers_raw is not None:
        if not isinstance(headers_raw, dict):
            raise ConfigError(p + "headers", "must be an object of header name -> value")
        for name, value in headers_raw.items():
            hp = f"{p}headers.{name}"
            if not name or any(c not in _TCHAR for c in name):
                raise ConfigError(
                    f"{p}headers.{_json_repr(name)}" if not name.isprintable() else hp,
                    "not a valid HTTP header name",
                    "use letters, digits and - _ . only",
                )
            if not isinstance(value, str):
                raise ConfigError(hp, "must be a string")
            check_header_value(value, hp)
            if value:  # every header value is a secret (redacted)
                check_secret_length(value, hp)
            headers.append((name, value))

    api_key = _secret(sec, "api_key", p + "api_key", required=False)
    if api_key:
        check_secret_length(api_key, p + "api_key")
    if fmt == "coralogix" and not api_key:
        has_auth = any(n.lower() == "authorization" for n, _ in headers)
        if not has_auth:
            raise ConfigError(
                p + "api_key",
                'required for siem.format "coralogix" (the Send-Your-Data API key)',
                f"set {p}api_key in the file",
            )

    method = (_str(sec, "method", p + "method", "POST") or "POST").upper()
    if method not in ("POST", "PUT", "PATCH"):
        raise ConfigError(p + "method", f"must be POST, PUT or PATCH (got {_json_repr(method)})")

    severity_auto = isinstance(sec.get("severity"), str) and sec["severity"].strip() == "auto"
    if severity_auto:
        severity = _severity(sec, "severity_default", p + "severity_default", auto=False)
    else:
        severity = _severity(sec, "severity", p + "severity", auto=True)
        mark_known(sec, "severity_default")  # a real key, only read with "auto"

    custom = sec.get("custom_log_fields")
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        raise ConfigError(p + "custom_log_fields", "must be an object of field -> value")
    app_default = "jumpcloud"
    sub_default = "directory-insights"
    if isinstance(custom.get("reqHost"), str) and custom["reqHost"]:
        app_default = custom["reqHost"]
    if isinstance(custom.get("customField"), str) and custom["customField"]:
        sub_default = custom["customField"]
    app = _str(sec, "application_name", p + "application_name", app_default) or app_default
    sub = _str(sec, "subsystem_name", p + "subsystem_name", sub_default) or sub_default

    tsf = _str(sec, "timestamp_field_name", p + "timestamp_field_name", "jc_timestamp")
    if not tsf:
        raise ConfigError(p + "timestamp_field_name", "must not be empty", 'use "jc_timestamp"')
    content_type = _str(sec, "content_type", p + "content_type", "application/json")
    if content_type:
        check_header_value(content_type, p + "content_type")

    return SiemConfig(
        format=fmt,  # type: ignore[arg-type]
        url=url,
        method=method,
        headers=tuple(headers),
        content_type=content_type or "application/json",
        api_key=api_key,
        application_name=app,
        subsystem_name=sub,
        severity=severity,
        batch_size=_number(sec, "batch_size", p + "batch_size", 1000, 1, 10000, integer=True),
        max_batch_bytes=_number(
            sec, "max_batch_bytes", p + "max_batch_bytes", 1_500_000, 512, 100_000_000, True
        ),
        batch_delay_milliseconds=_number(
            sec, "batch_delay_milliseconds", p + "batch_delay_milliseconds", 100, 0, 60000
        ),
        timestamp_field_name=tsf,
        custom_log_fields=tuple(custom.items()),
        timeout_seconds=float(_number(sec, "timeout_seconds", p + "timeout_seconds", 30, 0.1, 600)),
        ca_bundle=_ca_bundle(sec, p + "ca_bundle"),
        severity_auto=severity_auto,
        category_field=_field_name(sec, "category_field", p, "service"),
        class_name_field=_field_name(sec, "class_name_field", p, "event_type"),
        computer_name_field=_field_name(sec, "computer_name_field", p, "organization"),
        nest_under=_field_name(sec, "nest_under", p, None),
    )


def _severity(sec: dict, key: str, path: str, auto: bool) -> int:
    raw = sec.get(key, 3)
    if isinstance(raw, str) and raw.strip().lower() in SEVERITY_NAMES:
        return SEVERITY_NAMES[raw.strip().lower()]
    value = int(raw.strip()) if isinstance(raw, str) and raw.strip().isdigit() else raw
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 6:
        also = ', or "auto" (per event)' if auto else ""
        raise ConfigError(
            path,
            f"must be 1..6 or debug/verbose/info/warning/error/critical{also} "
            f"(got {_json_repr(raw)})",
        )
    return value


def _field_name(sec: dict, key: str, p: str, default: str | None) -> str | None:
    """An event field name (dots reach into objects: ``initiated_by.email``); missing ->
    the default, null or "" -> None (off)."""
    if key not in sec:
        return default
    value = sec[key]
    if value is None or value == "":
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or any(not part for part in value.split("."))
    ):
        raise ConfigError(
            p + key,
            f"must be a field name such as {_json_repr(default or 'jumpcloud')} "
            f"(got {_json_repr(value)})",
            'use "" or null to turn it off',
        )
    return value


def parse(raw: Any, path: str) -> Config:
    """Validate a decoded JSON document (with its credentials file merged over it); raise
    ConfigError on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", "must be a JSON object", "fix the file")
    merged = credentials.merge(raw, os.path.dirname(os.path.abspath(path)))
    try:
        return _parse(track(merged.raw), path, merged)
    except ConfigError as exc:
        if credentials.from_file(exc.key_path, merged):
            fix = exc.fix or f"fix the value in {merged.path}"
            raise ConfigError(f"{exc.key_path} (in {merged.path})", exc.problem, fix) from None
        if merged.path and exc.key_path in credentials.secret_key_paths():
            fix = f"{exc.fix or 'set it'} in credentials_file {merged.path}"
            raise ConfigError(exc.key_path, exc.problem, fix) from None
        raise


def _parse(raw: dict, path: str, merged: credentials.Merged) -> Config:
    mark_known(raw, credentials.KEY)
    jc = _parse_jumpcloud(raw)
    siem = _parse_siem(raw, jc)

    config_dir = os.path.dirname(os.path.abspath(path))
    state_dir = _str(raw, "state_dir", "state_dir")
    if not state_dir:
        state_dir = os.path.join(config_dir, "di2siem-state")
    elif not os.path.isabs(state_dir):
        state_dir = os.path.join(config_dir, state_dir)
    state_dir = os.path.normpath(state_dir)

    log_level = (_str(raw, "log_level", "log_level", "info") or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(
            "log_level", f"must be one of {', '.join(LOG_LEVELS)} (got {_json_repr(log_level)})"
        )

    secrets = [jc.api_key or "", jc.client_secret or ""] + [v for _, v in siem.headers if v]
    if siem.api_key:
        secrets.append(siem.api_key)
    legacy_end: int | None = None
    legacy = raw.get("state")
    if legacy is not None:
        if not isinstance(legacy, dict):
            raise ConfigError("state", "must be an object (legacy start_time/end_time)")
        end = legacy.get("end_time")
        if end not in (None, ""):
            if not isinstance(end, str):
                raise ConfigError("state.end_time", f"must be an RFC 3339 time ({end!r})")
            try:
                legacy_end = parse_ms(end)
            except ValueError:
                raise ConfigError(
                    "state.end_time",
                    f"not an RFC 3339 UTC time (got {_json_repr(end)})",
                    "fix it (e.g. 2022-12-18T14:57:03.801Z) or remove the state object",
                ) from None
            if legacy_end > now_ms() + FUTURE_MARGIN_MS:
                # seeding the floor there would count every event until then as shipped
                raise ConfigError(
                    "state.end_time",
                    f"{end} lies in the future (more than {FUTURE_MARGIN_MS // 60_000} minutes "
                    "past this host's clock): the events until then would never be shipped",
                    "set it to the end of the last window the old script really shipped, or "
                    "remove the state object",
                )

    heartbeat_url = _heartbeat_url(raw)
    if heartbeat_url:
        secrets += _url_secrets(heartbeat_url)
    log_format = (_str(raw, "log_format", "log_format", "keyvalue") or "keyvalue").lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            "log_format",
            f"must be one of {', '.join(LOG_FORMATS)} (got {_json_repr(log_format)})",
        )
    base = _number(raw, "retry_base_delay_seconds", "retry_base_delay_seconds", 1.0, 0, 600)
    cap = _number(raw, "retry_max_delay_seconds", "retry_max_delay_seconds", 60.0, 0, 3600)
    if jc.client_id and jc.client_secret:  # the token request's Basic credentials
        pair = f"{jc.client_id}:{jc.client_secret}".encode()
        secrets.append(base64.b64encode(pair).decode("ascii"))
    return Config(
        path=os.path.abspath(path),
        jumpcloud=jc,
        siem=siem,
        state_dir=state_dir,
        run_time_budget_seconds=float(
            _number(raw, "run_time_budget_seconds", "run_time_budget_seconds", 50, 1, 86400)
        ),
        max_retries=_number(raw, "max_retries", "max_retries", 5, 0, 20, integer=True),
        retry_base_delay_seconds=float(base),
        retry_max_delay_seconds=float(cap),
        recent_ids_max=_number(
            raw, "recent_ids_max", "recent_ids_max", 100_000, 1000, 10_000_000, integer=True
        ),
        log_level=log_level,
        legacy_end_time_ms=legacy_end,
        metrics_file=_metrics_file(raw, config_dir),
        heartbeat_url=heartbeat_url,
        log_format=log_format,
        parallel_orgs=_number(raw, "parallel_orgs", "parallel_orgs", 8, 1, 64, integer=True),
        secrets=tuple(sorted({s for s in secrets if s}, key=len, reverse=True)),
        warnings=tuple(_warnings(jc) + unknown_key_warnings(raw) + list(merged.notes)),
        credentials_file=merged.path,
        secret_files=_secret_files(os.path.abspath(path), merged),
    )


def _secret_files(config_path: str, merged: credentials.Merged) -> tuple[str, ...]:
    """The files whose permissions matter: the ones holding secret values."""
    files = (config_path,) if merged.inline or merged.path is None else ()
    return files + ((merged.path,) if merged.path else ())


def _metrics_file(raw: dict, config_dir: str) -> str | None:
    """Where the Prometheus textfile goes (relative: to the config file's directory)."""
    value = _str(raw, "metrics_file", "metrics_file")
    if not value or not value.strip():
        return None
    path = os.path.normpath(os.path.join(config_dir, value.strip()))
    if os.path.isdir(path):
        raise ConfigError(
            "metrics_file",
            f"{path} is a directory",
            "name the file, e.g. /var/lib/node_exporter/textfile_collector/di2siem.prom",
        )
    return path


def _heartbeat_url(raw: dict) -> str | None:
    """A secret (healthchecks.io-style URLs carry their token): never echoed back."""
    value = _secret(raw, "heartbeat_url", "heartbeat_url", required=False)
    if not value:
        return None
    try:
        check_url(value, "heartbeat_url")
    except ConfigError as exc:
        problem = "must be an https:// URL without credentials (plain http only on loopback)"
        raise ConfigError("heartbeat_url", problem, "fix heartbeat_url") from exc
    return value.rstrip("/")


# A part of a URL registered as a secret on its own must be at least this long and look like a
# token (see _token_like): redacting "ping", "api", "v1", "up" or "heartbeat" would rewrite
# ordinary log text, and the whole path (registered too) still covers them.
URL_PART_MIN_CHARS = 8


def _token_like(part: str) -> bool:
    """A random key rather than a word: 8+ characters with a digit or both letter cases, or
    16+ of anything (a UUID, a 22-character ping key, a 10-hex-digit snitch token...)."""
    if len(part) < URL_PART_MIN_CHARS:
        return False
    mixed = any(c.isupper() for c in part) and any(c.islower() for c in part)
    return len(part) >= 16 or mixed or any(c.isdigit() for c in part)


def _url_secrets(url: str) -> list[str]:
    """Every part of the URL but its scheme and host, wherever a message may quote it: the
    URL and its /fail form, its path, query and fragment whole, and the token-like path
    segments and query values on their own (a redirect's Location or a proxy error may
    quote any of them)."""
    parts = urlsplit(url)
    found = [url, url + "/fail", parts.username or "", parts.password or ""]
    path = parts.path
    for whole in (path, path + "/fail", parts.query, parts.fragment):
        if len(whole) >= URL_PART_MIN_CHARS:
            found += [whole, unquote(whole)]
    pieces = path.split("/") + parts.fragment.split("/")
    for pair in parts.query.split("&"):
        name, eq, value = pair.partition("=")
        pieces.append(value if eq else name)  # "?<token>" alone is a value too
    for piece in pieces:
        for form in {piece, unquote(piece), unquote_plus(piece)}:
            if _token_like(form):
                found.append(form)
    return [s for s in found if s]


def _warnings(jc: JumpCloudConfig) -> list[str]:
    unknown = unknown_services(jc.services)
    if not unknown:
        return []
    return [
        f"jumpcloud.services: {', '.join(unknown)} not in the services this version knows "
        "(JumpCloud adds services over time); sent as given, and JumpCloud answers 400 "
        "listing the supported values if a name is wrong"
    ]


def load(path: str) -> Config:
    """Read and validate the configuration file (never writes to it)."""
    data = read_file(path, "--config", "pass the right path")
    return parse(decode_json(data, path, "(file)"), path)


def read_file(path: str, key: str, missing_fix: str) -> bytes:
    """The bytes of a file the configuration needs, or a ConfigError naming ``key``."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ConfigError(key, f"file not found: {path}", missing_fix) from None
    except IsADirectoryError:
        raise ConfigError(key, f"is a directory: {path}", "pass the file path") from None
    except PermissionError:
        raise ConfigError(
            key,
            f"permission denied reading {path}",
            "run as a user in the file's group (the installer uses di2siem)",
        ) from None


def decode_json(data: bytes, path: str, key: str) -> Any:
    """UTF-8 JSON (a BOM is fine); the error names a position, never the text."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(key, "not UTF-8 text", f"save {path} as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            key,
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            f"fix the JSON syntax in {path}",
        ) from None


def permission_warnings(cfg: Config) -> list[str]:
    """One warning per secret-bearing file (configuration, credentials file) too open."""
    return [w for w in (permission_warning(p) for p in cfg.secret_files) if w]


def permission_warning(path: str) -> str | None:
    """Warn when the secret-bearing file is readable by people who should not read it.

    Rule: world-readable -> warn. Group-readable -> warn only when the group lists members
    other than the running user (a shared group such as ``staff``); a service group such as
    the installer's ``root:di2siem 0640`` file read by user ``di2siem`` does not warn.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IROTH:
        return f"{path} is world-readable (mode {mode:04o}) and holds secrets; chmod 0600 or 0640"
    if mode & stat.S_IRGRP:
        try:
            import grp
            import pwd

            members = set(grp.getgrgid(st.st_gid).gr_mem)
            me = pwd.getpwuid(os.getuid()).pw_name
        except (KeyError, ImportError):
            return None
        others = members - {me}
        if others:
            return (
                f"{path} is group-readable (mode {mode:04o}) by a group with other "
                f"members ({len(others)}) and holds secrets; chmod 0600 or use a dedicated group"
            )
    return None
