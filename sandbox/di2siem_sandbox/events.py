"""Deterministic generator of realistic JumpCloud Directory Insights events.

Events follow the shape of the legacy recipe's example (see docs): 24-hex `id`, RFC 3339 UTC
`timestamp` with milliseconds and `Z` (but, as the API sometimes does, every
`WHOLE_SECOND_EVERY`th generated event falls on a whole second written without them:
`2022-12-18T14:57:03Z`), `event_type`, `service`, `organization`,
`initiated_by{}`, `geoip{}`, `useragent{}`, `success`, `mfa`, `client_ip`, `"@version": "1"`,
sometimes `resource{}` / `changes[]`; `alerts` events carry `"severity": "Medium"`.
The same arguments always give the same events (ids included).
"""

from __future__ import annotations

import calendar
import hashlib
import random
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Union

DEFAULT_ORG_ID = "637212c33f396457d287dad6"
WHOLE_SECOND_EVERY = 7
DAY_MS = 86_400_000

# Services the generator draws from by default (weighted below).
EVENT_SERVICES: tuple[str, ...] = (
    "alerts",
    "directory",
    "ldap",
    "mdm",
    "notifications",
    "object_storage",
    "password_manager",
    "radius",
    "reports",
    "saas_app_management",
    "software",
    "sso",
    "systems",
    "access_management",
    "asset_management",
)
# Services that exist but that the generator only draws when asked (`services=`).
RECENT_SERVICES: tuple[str, ...] = ("password_vault", "genai", "aigw", "ai_admin", "generic_di")
# The enum of the API's EventQuery.service today ("all" and "workflows" are query-only).
QUERY_SERVICES: tuple[str, ...] = ("all", *EVENT_SERVICES, "workflows", *RECENT_SERVICES)

TimeLike = Union[datetime, str, int]

_SERVICE_WEIGHTS: dict[str, int] = {
    "directory": 30,
    "sso": 20,
    "systems": 20,
    "radius": 8,
    "ldap": 6,
    "mdm": 4,
    "alerts": 2,
}
_WEIGHTED_SERVICES: tuple[str, ...] = tuple(
    s for s in EVENT_SERVICES for _ in range(_SERVICE_WEIGHTS.get(s, 1))
)

_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "alerts": ("alert_created", "alert_updated"),
    "directory": (
        "admin_login_attempt",
        "user_login_attempt",
        "user_create",
        "user_update",
        "user_delete",
        "group_create",
        "association_change",
        "admin_update",
    ),
    "ldap": ("ldap_bind", "ldap_search"),
    "mdm": ("mdm_command_result", "mdm_enrollment"),
    "notifications": ("notification_sent",),
    "object_storage": ("object_storage_upload", "object_storage_download"),
    "password_manager": ("password_manager_item_create", "password_manager_item_access"),
    "radius": ("radius_auth",),
    "reports": ("report_generated",),
    "saas_app_management": ("saas_app_discovered", "saas_app_access"),
    "software": ("software_add", "software_remove"),
    "sso": ("sso_auth",),
    "systems": ("login_attempt", "user_lockout", "sudo_attempt"),
    "access_management": ("access_request_created", "access_request_approved"),
    "asset_management": ("asset_created", "asset_updated"),
    "password_vault": ("password_vault_item_access",),
    "genai": ("genai_prompt",),
    "aigw": ("aigw_request",),
    "ai_admin": ("ai_admin_update",),
    "generic_di": ("generic_event",),
}

_GEOIPS: tuple[dict[str, Any], ...] = (
    {
        "country_code": "IL",
        "timezone": "Asia/Jerusalem",
        "latitude": 32.0803,
        "continent_code": "AS",
        "region_name": "Tel Aviv",
        "longitude": 34.7805,
        "region_code": "TA",
    },
    {
        "country_code": "US",
        "timezone": "America/Denver",
        "latitude": 39.7392,
        "continent_code": "NA",
        "region_name": "Colorado",
        "longitude": -104.9903,
        "region_code": "CO",
    },
    {
        "country_code": "DE",
        "timezone": "Europe/Berlin",
        "latitude": 52.52,
        "continent_code": "EU",
        "region_name": "Land Berlin",
        "longitude": 13.405,
        "region_code": "BE",
    },
    {
        "country_code": "IN",
        "timezone": "Asia/Kolkata",
        "latitude": 12.9716,
        "continent_code": "AS",
        "region_name": "Karnataka",
        "longitude": 77.5946,
        "region_code": "KA",
    },
)

_USERAGENTS: tuple[dict[str, Any], ...] = (
    {
        "minor": "0",
        "os": "Mac OS X",
        "os_minor": "15",
        "os_major": "10",
        "os_version": "10.15.7",
        "version": "108.0.0.0",
        "os_patch": "7",
        "patch": "0",
        "os_full": "Mac OS X 10.15.7",
        "major": "108",
        "name": "Chrome",
        "os_name": "Mac OS X",
        "device": "Mac",
    },
    {
        "minor": "0",
        "os": "Windows",
        "os_major": "10",
        "os_version": "10",
        "version": "119.0",
        "patch": "0",
        "os_full": "Windows 10",
        "major": "119",
        "name": "Firefox",
        "os_name": "Windows",
        "device": "Other",
    },
    {
        "minor": "1",
        "os": "iOS",
        "os_minor": "1",
        "os_major": "17",
        "os_version": "17.1",
        "version": "17.1",
        "patch": "0",
        "os_full": "iOS 17.1",
        "major": "17",
        "name": "Mobile Safari",
        "os_name": "iOS",
        "device": "iPhone",
    },
)

_FIRST_NAMES = ("ada", "grace", "linus", "margaret", "ken", "barbara", "dennis", "radia")
_DOMAIN = "example.com"

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def format_ts(epoch_ms: int) -> str:
    """Epoch milliseconds -> `2022-12-18T14:57:03.801Z`."""
    seconds, ms = divmod(int(epoch_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def format_event_ts(epoch_ms: int, whole_second: bool = False) -> str:
    """An event's timestamp: with milliseconds, or (`whole_second`) truncated to the second
    and written without them, `2022-12-18T14:57:03Z`."""
    if whole_second:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch_ms) // 1000))
    return format_ts(epoch_ms)


def parse_ts(value: str) -> int:
    """RFC 3339 timestamp -> epoch milliseconds (fraction truncated). Raises ValueError."""
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    # datetime validates the calendar fields (month 13, Feb 30 ...).
    datetime(year, month, day, hour, minute, second)
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    ms = int((fraction[1:] + "000")[:3]) if fraction else 0
    return seconds * 1000 + ms


def to_epoch_ms(value: TimeLike) -> int:
    """Accept an aware/naive-UTC datetime, an RFC 3339 string or epoch milliseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        return parse_ts(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected datetime, RFC 3339 string or epoch ms, got {value!r}")
    return value


def now_ms() -> int:
    return int(time.time() * 1000)


def make_id(namespace: str, index: int) -> str:
    """24 hex chars, stable for (namespace, index)."""
    return hashlib.blake2b(f"{namespace}:{index}".encode(), digest_size=12).hexdigest()


def _person(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(_FIRST_NAMES)
    return name, f"{name}{rng.randrange(100)}@{_DOMAIN}"


def _client_ip(rng: random.Random) -> str:
    bits = rng.getrandbits(24)
    return f"10.{bits >> 16}.{(bits >> 8) & 255}.{(bits & 255) % 254 + 1}"


def _service_fields(rng: random.Random, service: str, event_type: str, ts: str) -> dict[str, Any]:
    """Fields that only some services carry."""
    extra: dict[str, Any] = {}
    if service == "alerts":
        extra["severity"] = "Medium"
        extra["message"] = "Multiple failed login attempts detected"
    elif service == "systems":
        extra["system_timestamp"] = ts[:-1] + "+00:00"  # device local time, here UTC
        extra["system"] = {
            "id": make_id("system", rng.randrange(50)),
            "hostname": f"host-{rng.randrange(50):02d}",
            "os": rng.choice(("Mac OS X", "Windows", "Ubuntu")),
        }
    elif service == "sso":
        extra["application"] = {
            "id": make_id("app", rng.randrange(10)),
            "name": rng.choice(("Slack", "Salesforce", "GitHub", "Zoom")),
        }
        extra["auth_context"] = {"policies_applied": [], "auth_methods": {"password": {}}}
    elif service in ("radius", "ldap"):
        extra["auth_method"] = rng.choice(("PAP", "MSCHAPv2", "simple_bind"))
    if event_type.endswith(("_update", "_change")):
        extra["changes"] = [
            {"field": "department", "from": "Sales", "to": "Engineering"},
            {"field": "title", "from": "", "to": "Engineer"},
        ]
    if event_type.startswith(("user_", "group_", "association", "admin_update")):
        kind = "group" if event_type.startswith("group_") else "user"
        extra["resource"] = {"id": make_id(kind, rng.randrange(1000)), "type": kind}
    return extra


def make_event(
    rng: random.Random,
    epoch_ms: int,
    event_id: str,
    org: str = DEFAULT_ORG_ID,
    service: str | None = None,
    whole_second: bool = False,
) -> dict[str, Any]:
    """One realistic event at `epoch_ms` (all randomness drawn from `rng`); `whole_second`:
    its timestamp carries no milliseconds (`epoch_ms` must then be a whole second)."""
    service = service or rng.choice(_WEIGHTED_SERVICES)
    event_type = rng.choice(_EVENT_TYPES.get(service, ("event",)))
    ts = format_event_ts(epoch_ms, whole_second)
    admin = event_type.startswith("admin") or service == "alerts"
    name, email = _person(rng)
    success = rng.random() > 0.1
    event: dict[str, Any] = {
        "initiated_by": {
            "id": hashlib.blake2b(email.encode(), digest_size=12).hexdigest(),
            "type": "admin" if admin else "user",
            "email": email,
            "username": name,
        },
        "geoip": dict(rng.choice(_GEOIPS)),
        "useragent": dict(rng.choice(_USERAGENTS)),
        "mfa": rng.random() > 0.5,
        "event_type": event_type,
        "success": success,
        "service": service,
        "organization": org,
        "provider": "",
        "@version": "1",
        "client_ip": _client_ip(rng),
        "id": event_id,
        "timestamp": ts,
    }
    event.update(_service_fields(rng, service, event_type, ts))
    return event


def iter_timed_events(
    count: int,
    start: TimeLike,
    end: TimeLike,
    seed: int = 0,
    org: str = DEFAULT_ORG_ID,
    services: tuple[str, ...] | list[str] | None = None,
    deep_every: int = 0,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like iter_events, but yields (epoch ms, event) pairs."""
    start_ms, end_ms = to_epoch_ms(start), to_epoch_ms(end)
    if end_ms < start_ms:
        raise ValueError("end must not be before start")
    rng = random.Random(f"{seed}:{org}")
    stamps = sorted(rng.randint(start_ms, end_ms) for _ in range(count))
    # every Nth event on a whole second, written without milliseconds (kept inside the range)
    timed = sorted(
        (ms - ms % 1000, True)
        if i % WHOLE_SECOND_EVERY == WHOLE_SECOND_EVERY - 1 and ms - ms % 1000 >= start_ms
        else (ms, False)
        for i, ms in enumerate(stamps)
    )
    namespace = f"{seed}:{org}:{start_ms}:{end_ms}:{count}"
    for index, (epoch_ms, whole) in enumerate(timed):
        service = rng.choice(services) if services else None
        event = make_event(rng, epoch_ms, make_id(namespace, index), org, service, whole)
        if deep_every and index % deep_every == deep_every - 1:
            event["resource"] = nested_object(12)
        yield epoch_ms, event


def iter_events(
    count: int,
    start: TimeLike,
    end: TimeLike,
    seed: int = 0,
    org: str = DEFAULT_ORG_ID,
    services: tuple[str, ...] | list[str] | None = None,
    deep_every: int = 0,
) -> Iterator[dict[str, Any]]:
    """Like generate_events, but yields events one at a time (sorted by timestamp)."""
    for _, event in iter_timed_events(count, start, end, seed, org, services, deep_every):
        yield event


def generate_events(
    count: int,
    start: TimeLike,
    end: TimeLike,
    seed: int = 0,
    org: str = DEFAULT_ORG_ID,
    services: tuple[str, ...] | list[str] | None = None,
    deep_every: int = 0,
) -> list[dict[str, Any]]:
    """`count` events spread uniformly over [start, end] (both inclusive), sorted by timestamp.

    `services` restricts the services drawn; `deep_every=N` makes every Nth event deeply
    nested (depth > 10, see `deep_event`). Ids are unique within a call and stable across calls
    with the same arguments.
    """
    return list(iter_events(count, start, end, seed, org, services, deep_every))


def burst_events(
    count: int,
    at: TimeLike,
    seed: int = 0,
    org: str = DEFAULT_ORG_ID,
    service: str | None = None,
) -> list[dict[str, Any]]:
    """`count` events that all share one millisecond (`at`), ids unique."""
    epoch_ms = to_epoch_ms(at)
    rng = random.Random(f"burst:{seed}:{org}:{epoch_ms}")
    namespace = f"burst:{seed}:{org}:{epoch_ms}:{count}"
    return [make_event(rng, epoch_ms, make_id(namespace, i), org, service) for i in range(count)]


def nested_object(depth: int) -> dict[str, Any]:
    """A dict nested `depth` levels deep: {"level": 1, "child": {"level": 2, ...}}."""
    node: dict[str, Any] = {"level": depth, "value": "leaf"}
    for level in range(depth - 1, 0, -1):
        node = {"level": level, "child": node}
    return node


def deep_event(
    depth: int = 12,
    at: TimeLike | None = None,
    seed: int = 0,
    org: str = DEFAULT_ORG_ID,
) -> dict[str, Any]:
    """A `directory` event whose `resource` is nested `depth` levels (json_depth tests)."""
    epoch_ms = to_epoch_ms(at) if at is not None else now_ms()
    rng = random.Random(f"deep:{seed}:{org}:{epoch_ms}")
    event = make_event(rng, epoch_ms, make_id(f"deep:{seed}:{org}", epoch_ms), org, "directory")
    event["resource"] = nested_object(depth)
    return event


def event_depth(value: Any) -> int:
    """Nesting depth of a JSON value (scalars 0, {} or [] 1, ...)."""
    if isinstance(value, dict):
        return 1 + max((event_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((event_depth(v) for v in value), default=0)
    return 0
