"""The ``jumpcloud`` section: its declared keys, the JumpCloudConfig they become, and the
rules a declaration cannot say (services, org ids, the MSP provider id, region and URLs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError, shown
from .auth import read_auth
from .checks import check_ca_bundle, check_header_value, check_url
from .orgs import (
    DEFAULT_ORG,
    JUMPCLOUD_ORG_ID_FORM,
    JUMPCLOUD_ORG_ID_PATTERN,
    PROVIDER_ID_PATTERN,
    PROVIDER_PREFIX,
)
from .regions import JUMPCLOUD_REGIONS, JUMPCLOUD_TOKEN_URLS, jumpcloud_base_url
from .schema import Field, Kind, Secret, Section

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

JUMPCLOUD = Section(
    "jumpcloud",
    (
        Field(
            "api_key",
            Kind.TEXT,
            secret=Secret.KEY,
            help=(
                "JumpCloud administrator API key, sent as `x-api-key`. Secret. Set it **or** "
                "`client_id` + `client_secret`, not both."
            ),
            shown_default="required unless a service account",
        ),
        Field(
            "client_id",
            Kind.TEXT,
            secret=Secret.HIDDEN,
            help=(
                "JumpCloud service account client id (instead of `api_key`). Needs "
                "`client_secret` and a non-empty `org_ids` (the API requires `x-org-id` with a "
                "service account)."
            ),
            shown_default="none",
        ),
        Field(
            "client_secret",
            Kind.TEXT,
            secret=Secret.KEY,
            help="The service account's client secret. Secret.",
            shown_default="none",
        ),
        Field(
            "token_url",
            Kind.TEXT,
            help=(
                "Service accounts: the OAuth token endpoint (`POST`, HTTP Basic "
                "`client_id:client_secret`, `grant_type=client_credentials&scope=api`). Unset, it"
                " follows the API region, as JumpCloud's PowerShell module and CLI do: `us` "
                "`https://admin-oauth.id.jumpcloud.com/oauth2/token`, `eu` "
                "`https://admin-oauth.id.eu.jumpcloud.com/oauth2/token`, `in` "
                "`https://admin-oauth.id.in.jumpcloud.com/oauth2/token`. The region is `region` "
                "when set, else the one whose API host `base_url` names (`api.eu.jumpcloud.com` →"
                " EU), else US (a proxy `base_url` without `region`: set `region` or "
                "`token_url`). An explicit `token_url` always wins. The access token is sent as "
                "`Authorization: Bearer`, refreshed shortly before `expires_in` runs out and once"
                " on a 401; it is redacted from every log line. `http://` only for loopback "
                "hosts."
            ),
            shown_default="follows the region",
        ),
        Field(
            "base_url",
            Kind.TEXT,
            help=(
                "API host (the path `/insights/directory/v1/events` is appended; a URL that "
                "already ends with it is accepted). Wins over `region`. `http://` only for "
                "loopback hosts."
            ),
            shown_default="`https://api.jumpcloud.com`",
        ),
        Field(
            "region",
            Kind.CHOICE,
            "us",
            choices=tuple(JUMPCLOUD_REGIONS),
            fold="lower",
            help=(
                "`us`, `eu` or `in` → `https://api.jumpcloud.com`, "
                "`https://api.eu.jumpcloud.com`, `https://api.in.jumpcloud.com`; also picks the "
                "service-account token host (see `token_url`), even when `base_url` is set."
            ),
        ),
        Field(
            "services",
            Kind.TEXT_LIST,
            ("all",),
            help=(
                "Services to read, all in one request (`service` array). The API's enum today: "
                "`all, alerts, directory, ldap, mdm, notifications, object_storage, "
                "password_manager, password_vault, radius, reports, saas_app_management, "
                "software, sso, systems, access_management, asset_management, workflows, genai, "
                "aigw, ai_admin, generic_di`. JumpCloud adds services over time, so a well-formed"
                " name (lower-case letters, digits, `_`) this version does not know is **sent as "
                "given**: `check` prints a `config: warning` line and `run` logs one warning; if "
                "JumpCloud does not know it either, its 400 (which lists the supported values) "
                'fails the run with `check jumpcloud.services`. A malformed name (`"Bogus Name"`)'
                " is a config error. A string is taken as a one-item list; `all` with others "
                "means `all`."
            ),
        ),
        Field(
            "org_ids",
            Kind.TEXT_LIST,
            (),
            help=(
                "MSP: a list of JumpCloud organization ids, each 24 hex digits `0-9 a-f` (e.g. "
                "`5f1b0c2e8d3a4b0012340001`, from the console's Settings); anything else, a "
                'string instead of a list (`"abc"`) included, is a config error naming '
                "`jumpcloud.org_ids` (or `jumpcloud.org_ids[i]` and the value), also from "
                "`check --offline`. Each org is polled with `x-org-id` and has its own cursor. "
                "Empty: "
                "the key's own organisation (state key `_default`). The least recently served "
                "org goes first, so when one org's backfill uses up `run_time_budget_seconds`, "
                "the orgs take turns instead of starving."
            ),
        ),
        Field(
            "provider_id",
            Kind.TEXT,
            help=(
                "MSP: the provider id of your Multi-Tenant Portal. Its own activity "
                "(administrators of the MSP acting across orgs) is read with the header "
                "`x-provider-id` (no `x-org-id`) as one more stream beside the orgs, with a "
                "cursor of its own under the state key `provider:<id>` (summary line "
                "`org=provider:<id>`). Letters, digits, `-`, `_`. The body flag "
                "`exclude_provider_activity` is **not** sent: whether the org streams also carry "
                "the portal's events is unconfirmed, and leaving them out could lose events; an "
                "event present in both streams would then be shipped once per stream (same `id`)."
            ),
            shown_default="none",
        ),
        Field(
            "json_depth",
            Kind.INTEGER,
            10,
            lo=1,
            hi=100,
            help=(
                "Legacy (PowerShell `ConvertTo-Json -Depth`). An event with an object/array "
                "nested deeper than this many levels below the event is **shipped whole** (never "
                "flattened), counted as `deep=N` in the summary and warned about. 1..100."
            ),
        ),
        Field(
            "timestamp_field_name",
            Kind.TEXT,
            "timestamp",
            help="Legacy: the event field that holds the event time.",
        ),
        Field(
            "initial_days_back",
            Kind.NUMBER,
            -1,
            lo=-3650,
            hi=0,
            help=(
                "Legacy: without any state, the first run starts `now + initial_days_back` days "
                "(a negative number, down to -3650; DI keeps 90 days)."
            ),
        ),
        Field(
            "page_size",
            Kind.INTEGER,
            10000,
            lo=1,
            hi=10000,
            help="`limit` sent per page (1..10000; 10000 is the API maximum and the fastest).",
        ),
        Field(
            "overlap_seconds",
            Kind.FLOAT,
            300,
            lo=0,
            hi=86400,
            help=(
                "Every run re-reads this window behind the cursor to catch events indexed late; "
                "already-shipped ids are dropped. 0..86400, fractions allowed."
            ),
        ),
        Field(
            "max_requests_per_second",
            Kind.FLOAT,
            5,
            lo=0.1,
            hi=100,
            help=(
                "A cap on JumpCloud API requests per second for the whole run, whichever org "
                "sends them (0.1..100; JumpCloud publishes no limit, peers hold themselves to "
                "2..10). A sustained rate: a run's first 2 requests start at once (a token "
                "bucket of 2, so an empty poll's clock probe and query do not wait), each later "
                "one waits for a token that comes every `1/rate`, so any second holds at most "
                "rate + 2 requests. A 429 pauses every org of the run for its `Retry-After` "
                "(else a backoff doubling from `retry_base_delay_seconds` with each consecutive "
                "429, capped at `retry_max_delay_seconds`) and empties the bucket. A request "
                "whose turn would come after `run_time_budget_seconds` is not sent: an org cut "
                "that way before its first request was not served (no run record, no summary "
                "line; it keeps its place and goes first next run, counted in `orgs_left`), one "
                "cut mid-stream ends `status=budget` and resumes next run. Orgs served alone "
                "cost at least one request each, so a run serves at most about `rate \u00d7 "
                "run_time_budget_seconds` of them (250 at the defaults); caught-up orgs share "
                "queries of up to `shared_query_max_orgs` (one request per 50 orgs). `check` "
                "(one probe per org) and `status --online` (one count per org) keep to the same "
                "rate, within one deadline of "
                "`2 \u00d7 timeout_seconds + min(timeout_seconds, 5 s)` (see `check` below)."
            ),
        ),
        Field(
            "shared_query_max_orgs",
            Kind.INTEGER,
            50,
            lo=1,
            hi=50,
            help=(
                "MSP: how many orgs may share one JumpCloud query (1..50; `1` turns sharing "
                "off). The API takes several `x-org-id` header lines in one request and answers "
                "with those orgs' events mixed, each naming its `organization`; di2siem routes "
                "every event to its own org's cursor and id memory, so 1,000 orgs cost about 20 "
                "requests a run instead of 1,000. New orgs (no cursor or floor yet) share their "
                "first window with each other, so a fresh MSP config is served in its first "
                "run. Any other org shares when it is caught up: its last turn reached the end "
                "of its stream (`last_status` `ok`), its window starts at most a day ago, and "
                "its window start lies within an hour of the group's earliest one. A member "
                "whose events in its group's query pass five pages (5 x `page_size`) leaves the "
                "group and continues alone (the others are served together again), so a large "
                "backlog never holds a group back. Orgs with a backlog (last turn cut by the "
                "budget), failed orgs, the default org and the MSP portal (`provider_id`) get "
                "their own stream. Every per-org guarantee holds in a shared query (see "
                '"Shared queries" under Behaviour). 50 keeps a request within the header limits '
                "of real HTTP front ends (about 100 header lines)."
            ),
        ),
        Field(
            "timeout_seconds",
            Kind.FLOAT,
            30,
            lo=0.1,
            hi=600,
            help=(
                "Per request: the whole exchange (connect, request, answer and its body) must end"
                " within it, however slowly the peer sends (see Hardening)."
            ),
        ),
        Field(
            "ca_bundle",
            Kind.TEXT,
            help=(
                "PEM file of CA certificates to trust instead of the system/certifi bundle (TLS "
                "verification is always on). Must exist."
            ),
        ),
    ),
)


@dataclass(frozen=True)
class JumpCloudConfig:
    api_key: str | None
    base_url: str
    services: tuple[str, ...]
    org_ids: tuple[str, ...]
    json_depth: int
    timestamp_field_name: str
    initial_days_back: float
    page_size: int
    overlap_seconds: float
    timeout_seconds: float
    ca_bundle: str | None
    client_id: str | None
    client_secret: str | None = field(repr=False)
    token_url: str
    provider_id: str | None
    max_requests_per_second: float
    shared_query_max_orgs: int

    @property
    def events_url(self) -> str:
        return self.base_url + "/insights/directory/v1/events"

    @property
    def service_account(self) -> bool:
        """OAuth client credentials (Bearer token) instead of the admin API key."""
        return bool(self.client_id)


def parse_jumpcloud(raw: dict) -> JumpCloudConfig:
    sec = JUMPCLOUD.values(raw, required=True)
    p = JUMPCLOUD.prefix
    api_key, client_id, client_secret = read_auth(JUMPCLOUD, sec)
    base_url, region = jumpcloud_base_url(
        JUMPCLOUD.read(sec, "base_url"), JUMPCLOUD.text(sec, "region"), p
    )
    token_url = JUMPCLOUD.read(sec, "token_url") or JUMPCLOUD_TOKEN_URLS[region]
    token_url = check_url(token_url.strip(), p + "token_url")
    services = _services(sec)
    org_ids = _org_ids(sec, bool(client_id))
    tsf = JUMPCLOUD.read(sec, "timestamp_field_name")
    if not tsf:
        raise ConfigError(p + "timestamp_field_name", "must not be empty", 'use "timestamp"')
    return JumpCloudConfig(
        api_key=api_key,
        base_url=base_url,
        services=services,
        org_ids=org_ids,
        json_depth=JUMPCLOUD.read(sec, "json_depth"),
        timestamp_field_name=tsf,
        initial_days_back=JUMPCLOUD.read(sec, "initial_days_back"),
        page_size=JUMPCLOUD.read(sec, "page_size"),
        overlap_seconds=JUMPCLOUD.read(sec, "overlap_seconds"),
        timeout_seconds=JUMPCLOUD.read(sec, "timeout_seconds"),
        ca_bundle=check_ca_bundle(JUMPCLOUD.read(sec, "ca_bundle"), p + "ca_bundle"),
        client_id=client_id,
        client_secret=client_secret,
        token_url=token_url,
        provider_id=_provider_id(sec),
        max_requests_per_second=JUMPCLOUD.read(sec, "max_requests_per_second"),
        shared_query_max_orgs=JUMPCLOUD.read(sec, "shared_query_max_orgs"),
    )


def _org_ids(sec: dict, service_account: bool) -> tuple[str, ...]:
    """MSP org ids (each sent as x-org-id); a service account needs at least one."""
    p = JUMPCLOUD.prefix
    if isinstance(sec.get("org_ids"), str):  # a one-item list would hide a pasted "a,b"
        raise ConfigError(
            p + "org_ids",
            f"must be a list of organisation ids, not a string (got {shown(sec['org_ids'])})",
            'write it as a list: "org_ids": ["5f1b0c2e8d3a4b0012340001", ...]',
        )
    org_ids = JUMPCLOUD.read(sec, "org_ids")
    if DEFAULT_ORG in org_ids or any(o.startswith(PROVIDER_PREFIX) for o in org_ids):
        raise ConfigError(
            p + "org_ids",
            f"{DEFAULT_ORG} and {PROVIDER_PREFIX}... are reserved",
            f"list real org ids (the MSP portal: {p}provider_id)",
        )
    for index, org in enumerate(org_ids):
        check_header_value(org, f"{p}org_ids[{index}]")  # sent as x-org-id
        if not JUMPCLOUD_ORG_ID_PATTERN.fullmatch(org):
            raise ConfigError(
                f"{p}org_ids[{index}]",
                f"not a JumpCloud organization id {shown(org)}: must be {JUMPCLOUD_ORG_ID_FORM}",
                "copy the organization id from the JumpCloud console (Settings)",
            )
    if service_account and not org_ids:
        raise ConfigError(
            p + "org_ids",
            "required with a service account (jumpcloud.client_id): the API needs x-org-id",
            f"list the organisation id(s) the service account reads in {p}org_ids",
        )
    return org_ids


def _provider_id(sec: dict) -> str | None:
    """MSP: the provider id whose Multi-Tenant Portal activity is read (x-provider-id)."""
    value = JUMPCLOUD.read(sec, "provider_id")
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not PROVIDER_ID_PATTERN.fullmatch(value):
        raise ConfigError(
            JUMPCLOUD.prefix + "provider_id",
            f"not a provider id {shown(value)}",
            "copy the id from the MSP portal",
        )
    return value


def _services(sec: dict) -> tuple[str, ...]:
    """Service names as given: a malformed name is refused, an unknown well-formed one is
    kept (JumpCloud adds services; its 400 lists the supported ones), see unknown_services."""
    path = JUMPCLOUD.prefix + "services"
    services = JUMPCLOUD.read(sec, "services")
    if not services:
        raise ConfigError(path, "must not be empty", 'use ["all"]')
    for name in services:
        if not SERVICE_NAME.fullmatch(name):
            raise ConfigError(
                path,
                f"not a service name {shown(name)} (lower-case letters, digits, _)",
                "use names from: " + ", ".join(sorted(JUMPCLOUD_SERVICES)),
            )
    if "all" in services and len(services) > 1:
        services = ("all",)
    return services


def unknown_services(services: tuple[str, ...]) -> list[str]:
    return [s for s in services if s not in JUMPCLOUD_SERVICES]


def service_warnings(jc: JumpCloudConfig) -> list[str]:
    unknown = unknown_services(jc.services)
    if not unknown:
        return []
    return [
        f"jumpcloud.services: {', '.join(unknown)} not in the services this version knows "
        "(JumpCloud adds services over time); sent as given, and JumpCloud answers 400 "
        "listing the supported values if a name is wrong"
    ]
