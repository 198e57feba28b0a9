"""The ``sentinel`` format's options (Azure Monitor Logs Ingestion API, the way into Microsoft
Sentinel): where rows go (``endpoint``, ``dcr_immutable_id``, ``stream``: the URL is derived
from them, ``siem.url`` stays unset) and the Microsoft Entra app that may send them
(``tenant_id``, ``client_id``, ``client_secret``, the token ``authority`` and ``scope``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ..errors import ConfigError, shown
from .checks import check_url
from .intake_options import IntakeOptions
from .schema import Field, Kind, Secret, Section

API_VERSION = "2023-01-01"
DEFAULT_STREAM = "Custom-JumpCloudDI_CL"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://monitor.azure.com//.default"
_DCR_ID = re.compile(r"dcr-[0-9a-fA-F]{32}")
_STREAM = re.compile(r"(Custom|Microsoft)-[A-Za-z0-9_]{1,200}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# a tenant is its GUID or one of its domain names (contoso.onmicrosoft.com)
_TENANT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_SCOPE = re.compile(r"[!#-\[\]-~]+")  # RFC 6749 scope-token characters


@dataclass(frozen=True)
class SentinelOptions:
    endpoint: str
    dcr_immutable_id: str
    stream: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    authority: str = DEFAULT_AUTHORITY
    scope: str = DEFAULT_SCOPE

    @property
    def ingestion_url(self) -> str:
        return (
            f"{self.endpoint}/dataCollectionRules/{self.dcr_immutable_id}/streams/"
            f"{quote(self.stream)}?api-version={API_VERSION}"
        )

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"


def _required(section: Section, values: dict, key: str, what: str) -> str:
    value = section.read(values, key)
    if not value or not value.strip():
        raise ConfigError(
            section.prefix + key,
            'required for siem.format "sentinel", missing or empty',
            f"set {section.prefix}{key} ({what})",
        )
    return value.strip()


def _matching(value: str, pattern: re.Pattern, path: str, problem: str, fix: str) -> str:
    if not pattern.fullmatch(value):
        raise ConfigError(path, f"{problem} (got {shown(value)})", fix)
    return value


def _base_url(value: str, path: str, allow_path: bool) -> str:
    """An https base URL (http on loopback), no query or fragment, without its final /."""
    url = check_url(value.strip(), path)
    parts = urlsplit(url)
    if parts.query or parts.fragment or (not allow_path and parts.path not in ("", "/")):
        raise ConfigError(
            path,
            f"must be a base URL, scheme and host only (got {shown(url)})",
            f"set {path} to e.g. https://<name>.<region>-1.ingest.monitor.azure.com",
        )
    return url.rstrip("/")


# The keys of a fixed form: (what it is, for the fix when missing; None: optional, with its
# default), its form, the problem and the fix when it has another form.
_FORMS: dict[str, tuple[str | None, re.Pattern, str, str]] = {
    "dcr_immutable_id": (
        "the DCR's immutableId",
        _DCR_ID,
        "must be a data collection rule's immutableId, dcr- and 32 hex digits",
        "copy immutableId from the DCR's JSON view (az monitor data-collection rule show)",
    ),
    "stream": (
        None,
        _STREAM,
        "must be a stream of the DCR, Custom-<table> (letters, digits, _)",
        f"use the DCR's streamDeclarations name, e.g. {DEFAULT_STREAM}",
    ),
    "tenant_id": (
        "the Microsoft Entra tenant's id",
        _TENANT,
        "must be the tenant's GUID or domain name",
        "copy the Directory (tenant) ID from the app registration",
    ),
    "client_id": (
        "the app registration's Application ID",
        _GUID,
        "must be the app registration's Application (client) ID, a GUID",
        "copy the Application (client) ID from the app registration",
    ),
    "scope": (
        None,
        _SCOPE,
        "must be one OAuth scope, no spaces",
        f"use {DEFAULT_SCOPE} (monitor.azure.us / monitor.azure.cn in other clouds)",
    ),
}


def _formed(section: Section, values: dict, key: str) -> str:
    what, pattern, problem, fix = _FORMS[key]
    value = _required(section, values, key, what) if what else section.read(values, key).strip()
    return _matching(value, pattern, section.prefix + key, problem, fix)


def _parse(section: Section, values: dict) -> SentinelOptions:
    p = section.prefix
    endpoint = _base_url(
        _required(section, values, "endpoint", "the DCR's logs ingestion endpoint or a DCE"),
        p + "endpoint",
        allow_path=False,
    )
    dcr, stream, tenant, client_id = (
        _formed(section, values, key)
        for key in ("dcr_immutable_id", "stream", "tenant_id", "client_id")
    )
    secret = _required(section, values, "client_secret", "the app's client secret value")
    section.refuse_short_secret("client_secret", secret)
    authority = _base_url(section.read(values, "authority"), p + "authority", allow_path=True)
    scope = _formed(section, values, "scope")
    return SentinelOptions(endpoint, dcr, stream, tenant, client_id, secret, authority, scope)


def _text(key: str, help: str, default: str | None = None, **extra) -> Field:
    return Field(key, Kind.TEXT, default, help=f"`sentinel`: {help}", **extra)


SENTINEL = IntakeOptions(
    "sentinel",
    (
        _text(
            "endpoint",
            "the DCR's logs ingestion endpoint or a data collection endpoint, e.g. "
            "`https://<name>.<region>-1.ingest.monitor.azure.com` (the request URL is derived: "
            "leave `url` unset).",
            shown_default="required for `sentinel`",
        ),
        _text(
            "dcr_immutable_id",
            "the data collection rule's `immutableId` (`dcr-` and 32 hex digits).",
            shown_default="required for `sentinel`",
        ),
        _text(
            "stream",
            "the DCR's input stream (`Custom-<table>`).",
            DEFAULT_STREAM,
            blank_is_default=True,
        ),
        _text(
            "tenant_id",
            "the Microsoft Entra tenant (its GUID or domain name).",
            shown_default="required for `sentinel`",
        ),
        _text(
            "client_id",
            "the app registration's Application (client) ID (a GUID), granted "
            '"Monitoring Metrics Publisher" on the DCR.',
            secret=Secret.HIDDEN,
            shown_default="required for `sentinel`",
        ),
        _text(
            "client_secret",
            "the app's client secret (its value, not its id). Secret.",
            secret=Secret.KEY,
            shown_default="required for `sentinel`",
        ),
        _text(
            "authority",
            "the token issuer: `<authority>/<tenant_id>/oauth2/v2.0/token` (other clouds: "
            "`https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`).",
            DEFAULT_AUTHORITY,
            blank_is_default=True,
        ),
        _text(
            "scope",
            "the token's scope (`https://monitor.azure.us//.default`, "
            "`https://monitor.azure.cn//.default` in other clouds).",
            DEFAULT_SCOPE,
            blank_is_default=True,
        ),
    ),
    _parse,
    "`sentinel` (rows for a Microsoft Sentinel / Log Analytics table through the Azure "
    "Monitor Logs Ingestion API)",
    url=lambda options: options.ingestion_url,
)
