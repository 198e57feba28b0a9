"""Fidelity to JumpCloud as it is today (issue 7): token host per region, services JumpCloud
adds over time, 402 for an org without Directory Insights, MSP portal activity."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import JC_KEY, Env, legacy_config, recent_events
from di2siem.config import JUMPCLOUD_SERVICES, parse
from di2siem.sandbox.events import QUERY_SERVICES

# the enum of the API's EventQuery.service today (shared/reference/jumpcloud-di-api.md)
REFERENCE_SERVICES = {
    "all", "alerts", "directory", "ldap", "mdm", "notifications", "object_storage",
    "password_manager", "password_vault", "radius", "reports", "saas_app_management",
    "software", "sso", "systems", "access_management", "asset_management", "workflows",
    "genai", "aigw", "ai_admin", "generic_di",
}  # fmt: skip
US_TOKEN = "https://admin-oauth.id.jumpcloud.com/oauth2/token"
EU_TOKEN = "https://admin-oauth.id.eu.jumpcloud.com/oauth2/token"
IN_TOKEN = "https://admin-oauth.id.in.jumpcloud.com/oauth2/token"


def sa_raw(**jc: Any) -> dict[str, Any]:
    return {
        "jumpcloud": {"client_id": "cid", "client_secret": "sec", "org_ids": ["o1"], **jc},
        "siem": {"url": "https://siem.example/in"},
    }


@pytest.mark.parametrize(
    ("jc", "token_url"),
    [
        ({}, US_TOKEN),
        ({"region": "us"}, US_TOKEN),
        ({"region": "eu"}, EU_TOKEN),
        ({"region": "EU"}, EU_TOKEN),
        ({"region": "in"}, IN_TOKEN),
        ({"base_url": "https://api.eu.jumpcloud.com"}, EU_TOKEN),
        ({"base_url": "https://api.in.jumpcloud.com/insights/directory/v1/"}, IN_TOKEN),
        ({"base_url": "https://api.jumpcloud.com"}, US_TOKEN),
        ({"base_url": "https://proxy.example.com"}, US_TOKEN),
        ({"base_url": "https://proxy.example.com", "region": "eu"}, EU_TOKEN),
        ({"region": "eu", "token_url": "https://auth.example.com/t"}, "https://auth.example.com/t"),
    ],
)
def test_token_url_follows_the_region(jc: dict[str, Any], token_url: str) -> None:
    assert parse(sa_raw(**jc), "/c.json").jumpcloud.token_url == token_url


def test_known_services_are_todays_enum_and_the_simulator_agrees() -> None:
    assert set(JUMPCLOUD_SERVICES) == REFERENCE_SERVICES
    assert set(QUERY_SERVICES) == REFERENCE_SERVICES


def test_every_known_service_is_accepted_without_warning() -> None:
    raw = sa_raw(services=sorted(REFERENCE_SERVICES - {"all"}))
    cfg = parse(raw, "/c.json")
    assert cfg.warnings == () and len(cfg.jumpcloud.services) == len(REFERENCE_SERVICES) - 1


def test_unknown_well_formed_service_is_sent_with_a_warning(env: Env, capsys) -> None:
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["jumpcloud"]["services"] = ["directory", "quantum_vault"]
    env.write(cfg)
    rc, out, err = env.run(capsys, "--offline", command="check")
    assert rc == 0, err
    warning = [line for line in out.splitlines() if "not in the services" in line]
    assert len(warning) == 1 and warning[0].startswith("di2siem check config: warning - ")
    assert "jumpcloud.services" in warning[0] and "400" in warning[0]
    # run: the name goes to JumpCloud as given; the API's 400 (listing the supported
    # values) is the authority and the run fails naming the key
    rc, _, err = env.run(capsys)
    assert rc == 1
    sent = [r["body"]["service"] for r in env.jc.requests]
    assert sent and all(s == ["directory", "quantum_vault"] for s in sent)
    assert err.count("quantum_vault not in the services this version knows") == 1
    assert "JumpCloud answered 400: check jumpcloud.services" in err
    assert "supported values: all, alerts" in err
    assert env.cx.stats["requests"] == 0


def test_new_services_reach_the_simulator_and_ship(env: Env, capsys) -> None:
    events = recent_events(12, seed=5)
    for event, service in zip(events, ["genai", "aigw", "ai_admin", "generic_di"] * 3):
        event["service"] = service
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["jumpcloud"]["services"] = ["genai", "aigw", "ai_admin", "generic_di", "password_vault"]
    env.write(cfg)
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert sorted(env.shipped_ids()) == sorted(e["id"] for e in events)
    assert JC_KEY not in err
