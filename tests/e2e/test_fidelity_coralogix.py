"""Fidelity to Coralogix as it is today (issue 7): the team login URL as siem.region,
per-event severity, category / className / computerName from the event, and the event
nested under one key as Coralogix's JumpCloud page shows it. Over real HTTP to the sink."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import CX_KEY, Env, legacy_config, recent_events
from di2siem.config import parse
from di2siem.errors import ConfigError
from di2siem.intakes import intake_for
from di2siem.shaping import Shaper
from di2siem.timeutil import parse_ms

# shared/reference/coralogix-ingest.md: region, Coralogix domain, account UI host
DOMAINS = [
    ("US1", "us1.coralogix.com", "app.coralogix.us"),
    ("US2", "us2.coralogix.com", "app.cx498.coralogix.com"),
    ("US3", "us3.coralogix.com", "app.us3.coralogix.com"),
    ("EU1", "eu1.coralogix.com", "coralogix.com"),
    ("EU2", "eu2.coralogix.com", "app.eu2.coralogix.com"),
    ("AP1", "ap1.coralogix.com", "app.coralogix.in"),
    ("AP2", "ap2.coralogix.com", "app.coralogixsg.com"),
    ("AP3", "ap3.coralogix.com", "app.ap3.coralogix.com"),
    ("GOV1", "gov1.coralogixgov.us", "app.gov1.coralogixgov.us"),
]
FORMS = [
    "{code}",
    "{code_lower}",
    "{domain}",
    "ingress.{domain}",
    "{ui}",
    "https://{ui}/",
    "https://acme.{ui}/",
    "acme.{ui}",
    "https://acme.{ui}/#/dashboards",
    "HTTPS://Acme.{ui}:443/#/query-new/logs?x=1",
    " acme.{ui}/ ",
]


def cx_raw(**siem: Any) -> dict[str, Any]:
    return {
        "jumpcloud": {"api_key": "jc-key-for-tests"},
        "siem": {"format": "coralogix", "api_key": CX_KEY, **siem},
    }


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("code", "domain", "ui"), DOMAINS)
def test_region_accepts_code_domain_ui_host_and_team_login_url(
    code: str, domain: str, ui: str, form: str
) -> None:
    region = form.format(code=code, code_lower=code.lower(), domain=domain, ui=ui)
    cfg = parse(cx_raw(region=region), "/c.json")
    assert cfg.siem.url == f"https://ingress.{domain}/logs/v1/singles"
    legacy = parse(cx_raw(region=region, format="json_lines"), "/c.json")
    assert legacy.siem.url == f"https://ingress.{domain}/logs/datastream"


@pytest.mark.parametrize(
    "region", ["acme.example.com", "https://acme.evil.com/coralogix.com", "coralogix", "eu9"]
)
def test_unknown_region_is_a_one_line_error(region: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(cx_raw(region=region), "/c.json")
    assert str(info.value).startswith("siem.region: unknown Coralogix region")
    assert "login URL" in str(info.value)


# -- the shipped entries ----------------------------------------------------------------------


def coralogix_config(env: Env, **siem: Any) -> dict[str, Any]:
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["siem"] = {
        "format": "coralogix",
        "url": env.cx.url + "/logs/v1/singles",
        "api_key": CX_KEY,
        "batch_delay_milliseconds": 0,
        **siem,
    }
    return cfg


def varied_events() -> list[dict[str, Any]]:
    """Alerts of every severity, failed and successful actions, odd field values."""
    events = recent_events(12, seed=21)
    for event in events:
        event.pop("severity", None)
        event["success"] = True
    for event, level in zip(events[:5], ["Low", "Medium", "High", "Critical", "Urgent"]):
        event.update(service="alerts", event_type="alert_created", severity=level)
    events[5]["success"] = False  # a failed login
    events[6].update(service="alerts", severity="low", success=False)  # at least Warning
    events[7].update(service="alerts", severity="High", success=False)
    events[8]["organization"] = ""  # empty: left out
    del events[9]["event_type"]  # missing: left out
    events[10]["service"] = {"odd": "object"}  # not a string: left out
    events[11]["success"] = "false"  # only the boolean false counts
    return events


# severity by index with siem.severity "auto" and severity_default "verbose" (2)
AUTO_LEVELS = [3, 4, 5, 6, 2, 4, 4, 5, 2, 2, 2, 2]


def entries_by_id(env: Env) -> dict[str, dict[str, Any]]:
    records = [r["record"] for r in env.cx.received]
    return {r["text"]["id"]: r for r in records}


def test_severity_auto_maps_each_event_to_its_own_level(env: Env, capsys) -> None:
    events = varied_events()
    env.jc.add_events(events)
    env.write(coralogix_config(env, severity="auto", severity_default="verbose"))
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    got = entries_by_id(env)
    assert len(got) == len(events)
    assert [got[e["id"]]["severity"] for e in events] == AUTO_LEVELS


def test_fixed_severity_stays_fixed(env: Env, capsys) -> None:
    events = varied_events()
    env.jc.add_events(events)
    env.write(coralogix_config(env, severity="warning"))
    assert env.run(capsys)[0] == 0
    assert {r["severity"] for r in entries_by_id(env).values()} == {4}


def test_category_class_name_computer_name_from_the_event(env: Env, capsys) -> None:
    events = varied_events()
    env.jc.add_events(events)
    env.write(coralogix_config(env))
    assert env.run(capsys)[0] == 0
    got = entries_by_id(env)
    for event in events:
        entry = got[event["id"]]
        expected = {
            "category": event.get("service"),
            "className": event.get("event_type"),
            "computerName": event.get("organization"),
        }
        for key, value in expected.items():
            if isinstance(value, str) and value:
                assert entry[key] == value
            else:
                assert key not in entry
        assert entry["timestamp"] == parse_ms(event["timestamp"])
        assert entry["text"]["jc_timestamp"] == event["timestamp"]


def test_entry_fields_are_configurable_and_can_be_turned_off(env: Env, capsys) -> None:
    events = varied_events()
    env.jc.add_events(events)
    env.write(
        coralogix_config(
            env,
            category_field="",
            class_name_field=None,
            computer_name_field="initiated_by.email",
        )
    )
    assert env.run(capsys)[0] == 0
    got = entries_by_id(env)
    for event in events:
        entry = got[event["id"]]
        assert "category" not in entry and "className" not in entry
        assert entry["computerName"] == event["initiated_by"]["email"]


@pytest.mark.parametrize("value", [5, "a..b", ".x", "  "])
def test_entry_field_names_are_checked(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^siem\.category_field: must be a field name"):
        parse(cx_raw(region="EU1", category_field=value), "/c.json")


@pytest.mark.parametrize("value", ["loud", 7, "AUTO", None])
def test_severity_values_are_checked(value: Any) -> None:
    with pytest.raises(ConfigError, match=r'^siem\.severity: must be 1\.\.6 .* or "auto"'):
        parse(cx_raw(region="EU1", severity=value), "/c.json")
    with pytest.raises(ConfigError, match=r"^siem\.severity_default: must be 1\.\.6"):
        parse(cx_raw(region="EU1", severity="auto", severity_default="auto"), "/c.json")


# -- nesting under one key ---------------------------------------------------------------------


def test_nest_under_json_lines_matches_coralogix_page(env: Env, capsys) -> None:
    events = recent_events(30, seed=22)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url, nest_under="jumpcloud")
    env.write(cfg)
    assert env.run(capsys)[0] == 0
    lines = [r["record"] for r in env.cx.received]
    assert len(lines) == 30 and all(list(line) == ["jumpcloud"] for line in lines)
    inner = lines[0]["jumpcloud"]
    first = events[0]
    # as Coralogix's JumpCloud page shows: the event, jc_timestamp and the custom fields
    assert list(inner)[-4:] == ["jc_timestamp", "reqHost", "customField", "severity"]
    assert inner["id"] == first["id"] and inner["jc_timestamp"] == first["timestamp"]
    assert "timestamp" not in inner
    assert sorted(line["jumpcloud"]["id"] for line in lines) == sorted(e["id"] for e in events)


def test_nest_under_json_array_and_coralogix(env: Env, capsys) -> None:
    events = recent_events(10, seed=23)
    env.jc.add_events(events)
    env.write(legacy_config(env.jc.url, env.cx.url, format="json_array", nest_under="jc"))
    assert env.run(capsys)[0] == 0
    records = [r["record"] for r in env.cx.received]
    assert sorted(r["jc"]["id"] for r in records) == sorted(e["id"] for e in events)
    env.cx.clear()
    env.state_file.unlink()
    env.write(coralogix_config(env, nest_under="jumpcloud", severity="auto"))
    assert env.run(capsys)[0] == 0
    entries = [r["record"] for r in env.cx.received]
    assert sorted(e["text"]["jumpcloud"]["id"] for e in entries) == sorted(e["id"] for e in events)
    assert all(list(e["text"]) == ["jumpcloud"] for e in entries)
    assert all(e["category"] == e["text"]["jumpcloud"]["service"] for e in entries)


def test_flat_stays_the_default_byte_for_byte(env: Env, capsys) -> None:
    events = recent_events(5, seed=24)
    env.jc.add_events(events)
    env.write()
    assert env.run(capsys)[0] == 0
    body = env.cx.received[0]["record"]
    assert "jumpcloud" not in body and body["id"] == events[0]["id"]


# -- the fast path and the serialiser agree ------------------------------------------------------


@pytest.mark.parametrize(
    "siem",
    [
        {"severity": "auto"},
        {"severity": "auto", "nest_under": "jumpcloud"},
        {"computer_name_field": "initiated_by.email", "nest_under": "x"},
        {"format": "json_lines", "nest_under": "jumpcloud"},
        {"category_field": "", "class_name_field": "", "computer_name_field": ""},
    ],
)
def test_spliced_and_serialised_entries_are_the_same_bytes(siem: dict[str, Any]) -> None:
    cfg = parse(cx_raw(region="EU1", **siem), "/c.json")
    for event in varied_events():
        raw = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        fast = Shaper(cfg, intake_for(cfg.siem).envelope)
        fast.begin_page(json.loads(raw), raw)
        assert fast.fast
        spliced = fast.fast_bytes(json.loads(raw), raw, 1671375423801)
        serialised = Shaper(cfg, intake_for(cfg.siem).envelope).shape(
            json.loads(raw), None, 1671375423801
        )
        assert spliced is not None and spliced == serialised
        json.loads(spliced)
