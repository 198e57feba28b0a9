"""The legacy ``configurations.json`` (the PowerShell script's file), accepted unchanged: its
``state.end_time`` seeds the first run, and its ``reqHost`` / ``customField`` custom log
fields are the defaults of the Coralogix application and subsystem names."""

from __future__ import annotations

from ..errors import ConfigError, shown
from ..timeutil import FUTURE_MARGIN_MS, now_ms, parse_ms


def legacy_end_time_ms(raw: dict) -> int | None:
    """``state.end_time`` as epoch ms (None: no legacy state), refused when in the future."""
    legacy = raw.get("state")
    if legacy is None:
        return None
    if not isinstance(legacy, dict):
        raise ConfigError("state", "must be an object (legacy start_time/end_time)")
    end = legacy.get("end_time")
    if end in (None, ""):
        return None
    if not isinstance(end, str):
        raise ConfigError("state.end_time", f"must be an RFC 3339 time ({end!r})")
    try:
        legacy_end = parse_ms(end)
    except ValueError:
        raise ConfigError(
            "state.end_time",
            f"not an RFC 3339 UTC time (got {shown(end)})",
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
    return legacy_end


def legacy_name_defaults(custom: dict, app_default: str, sub_default: str) -> tuple[str, str]:
    """(application name, subsystem name) defaults: the legacy custom fields when set."""
    if isinstance(custom.get("reqHost"), str) and custom["reqHost"]:
        app_default = custom["reqHost"]
    if isinstance(custom.get("customField"), str) and custom["customField"]:
        sub_default = custom["customField"]
    return app_default, sub_default
