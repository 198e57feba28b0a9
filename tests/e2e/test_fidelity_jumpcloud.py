"""Fidelity to JumpCloud as it is today (issue 7): token host per region, services JumpCloud
adds over time, 402 for an org without Directory Insights, MSP portal activity."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conftest import (
    CX_KEY,
    JC_KEY,
    ORG_A,
    ORG_B,
    REFERENCE_SERVICES,
    Env,
    legacy_config,
    recent_events,
    sandbox_process,
)
from di2siem.config import JUMPCLOUD_SERVICES, parse
from di2siem.errors import ConfigError
from di2siem.timeutil import format_ms, parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import QUERY_SERVICES

PROVIDER = "5f0c1b2a3d4e5f6a7b8c9d0e"
SA_ORG = "5f1b0c2e8d3a4b0012340001"

US_TOKEN = "https://admin-oauth.id.jumpcloud.com/oauth2/token"
EU_TOKEN = "https://admin-oauth.id.eu.jumpcloud.com/oauth2/token"
IN_TOKEN = "https://admin-oauth.id.in.jumpcloud.com/oauth2/token"


def sa_raw(**jc: Any) -> dict[str, Any]:
    return {
        "jumpcloud": {
            "client_id": "cid",
            "client_secret": "sa-secret-for-tests",
            "org_ids": [SA_ORG],
            **jc,
        },
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
    assert set(JUMPCLOUD_SERVICES) == set(REFERENCE_SERVICES)
    assert set(QUERY_SERVICES) == set(REFERENCE_SERVICES)


def test_every_known_service_is_accepted_without_warning() -> None:
    raw = sa_raw(services=[s for s in REFERENCE_SERVICES if s != "all"])
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


def test_whole_second_timestamps_ship_once_in_order(env: Env, capsys) -> None:
    # the generator writes every 7th event without milliseconds; paging 7 at a time puts
    # page boundaries among them, and a second run re-reads the overlap
    events = recent_events(120, seed=8, minutes=2)
    bare = [e for e in events if len(e["timestamp"]) == 20]
    assert len(bare) >= 10
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["jumpcloud"]["page_size"] = 7
    env.write(cfg)
    assert env.run(capsys)[0] == 0
    assert env.run(capsys)[0] == 0
    shipped = env.shipped()
    assert sorted(e["id"] for e in shipped) == sorted(e["id"] for e in events)
    by_id = {e["id"]: e["timestamp"] for e in events}
    assert all(e["jc_timestamp"] == by_id[e["id"]] for e in shipped)  # verbatim
    stamps = [parse_ms(e["jc_timestamp"]) for e in shipped]
    assert stamps == sorted(stamps)
    assert env.state()["orgs"]["_default"]["cursor"] == format_ms(max(stamps))


def test_whole_second_timestamp_in_coralogix_format(env: Env, capsys) -> None:
    events = recent_events(14, seed=9, minutes=1)
    env.jc.add_events(events)
    cfg = legacy_config(env.jc.url, env.cx.url)
    cfg["siem"] = {"format": "coralogix", "url": env.cx.url + "/logs/v1/singles",
                   "api_key": CX_KEY}  # fmt: skip
    env.write(cfg)
    assert env.run(capsys)[0] == 0
    entries = [r["record"] for r in env.cx.received]
    assert len(entries) == 14
    for entry in entries:
        assert entry["timestamp"] == parse_ms(entry["text"]["jc_timestamp"])
    assert any(len(e["text"]["jc_timestamp"]) == 20 for e in entries)


# -- 402: Directory Insights not enabled for an org -------------------------------------------


def msp_env(tmp_path, sink, **kwargs: Any) -> Env:
    sim = JumpCloudSimulator(api_key=JC_KEY, org_ids=[ORG_A, ORG_B], **kwargs).start()
    return Env(tmp_path, sim, sink)


def test_402_names_the_org_and_the_plan_and_the_other_orgs_still_ship(
    tmp_path, sink, capsys
) -> None:
    env = msp_env(tmp_path, sink, insights_disabled=[ORG_A])
    try:
        events_a, events_b = recent_events(30, seed=1), recent_events(40, seed=2)
        env.jc.add_events(events_a, org=ORG_A)
        env.jc.add_events(events_b, org=ORG_B)
        cfg = legacy_config(env.jc.url, env.cx.url)
        cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
        # each org its own query: the 402 that names its org (a shared query's 402 cannot:
        # test_shared_query.py)
        cfg["jumpcloud"]["shared_query_max_orgs"] = 1
        env.write(cfg)
        started = time.monotonic()
        rc, _, err = env.run(capsys)
        assert rc == 1
        assert time.monotonic() - started < 10
        assert sorted(env.shipped_ids()) == sorted(e["id"] for e in events_b)
        lines = [line for line in err.splitlines() if "(JumpCloud 402)" in line]
        assert len(lines) == 1, err
        assert (
            f"org {ORG_A}: Directory Insights is not enabled for this organization (JumpCloud "
            "402): enable Directory Insights on its plan or remove it from jumpcloud.org_ids"
        ) in lines[0]
        assert "base_url" not in lines[0] and "retrying" not in err
        # not transient: asked once, never retried
        refused = [r for r in env.jc.stats["by_path"].values() if "402" in r]
        assert sum(r["402"] for r in refused) == 1
        state = env.state()["orgs"]
        assert state[ORG_B]["cursor"] is not None
        assert state.get(ORG_A, {}).get("cursor") is None
        # check names it too, per org
        rc, out, _ = env.run(capsys, command="check")
        assert rc == 1
        assert f"di2siem check jumpcloud org={ORG_A}: FAILED - org {ORG_A}: Directory" in out
        assert f"di2siem check jumpcloud org={ORG_B}: ok" in out
        # once enabled, the org ships from its own start
        env.jc.set_insights(ORG_A, enabled=True)
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert sorted(env.shipped_ids()) == sorted(e["id"] for e in events_a + events_b)
    finally:
        env.jc.stop()


# -- MSP portal activity (x-provider-id) ------------------------------------------------------


def test_provider_activity_is_its_own_stream_beside_the_orgs(tmp_path, sink, capsys) -> None:
    env = msp_env(tmp_path, sink, provider_id=PROVIDER)
    try:
        org_events = recent_events(25, seed=3)
        portal = recent_events(15, seed=4)
        for event in portal:
            event["provider"] = PROVIDER
        env.jc.add_events(org_events, org=ORG_A)
        env.jc.add_events(portal, org=env.jc.provider_store)
        cfg = legacy_config(env.jc.url, env.cx.url)
        cfg["jumpcloud"].update(org_ids=[ORG_A, ORG_B], provider_id=PROVIDER, page_size=4)
        env.write(cfg)
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        ids = env.shipped_ids()
        assert sorted(ids) == sorted(e["id"] for e in org_events + portal)
        assert len(ids) == len(set(ids))
        state = env.state()["orgs"]
        key = "provider:" + PROVIDER
        assert set(state) == {ORG_A, ORG_B, key}
        newest = max(parse_ms(e["timestamp"]) for e in portal)
        assert state[key]["cursor"] == format_ms(newest)
        assert set(state[key]["recent_ids"]) == {e["id"] for e in portal}
        portal_requests = [r for r in env.jc.requests if r["org"] == "provider:" + PROVIDER]
        assert len(portal_requests) == 4  # 15 events, 4 per page
        assert f"org={key}" in err
        # new portal events later: only they ship, under the provider's own cursor
        more = recent_events(3, seed=5, minutes=1)
        for event in more:
            event["provider"] = PROVIDER
        env.jc.add_events(more, org=env.jc.provider_store)
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert sorted(env.shipped_ids()) == sorted(e["id"] for e in org_events + portal + more)
        assert f"provider={PROVIDER}" in env.run(capsys, "--offline", command="check")[1]
    finally:
        env.jc.stop()


def test_provider_id_must_look_like_an_id() -> None:
    raw = sa_raw(provider_id="not an id!")
    with pytest.raises(ConfigError, match=r"jumpcloud\.provider_id: not a provider id"):
        parse(raw, "/c.json")
    assert parse(sa_raw(provider_id=""), "/c.json").org_keys == (SA_ORG,)
    assert parse(sa_raw(provider_id=PROVIDER), "/c.json").org_keys == (
        SA_ORG,
        "provider:" + PROVIDER,
    )


def test_sandbox_cli_serves_provider_activity_and_402(tmp_path, capsys) -> None:
    import json

    from di2siem.cli import main

    config_path = tmp_path / "config.json"
    args = ["--backlog", "20", "--rate", "0", "--org-id", ORG_A, "--org-id", ORG_B]
    args += ["--no-insights", ORG_A, "--provider-id", PROVIDER]
    with sandbox_process(*args, "--write-config", str(config_path)):
        assert json.loads(config_path.read_text())["jumpcloud"]["provider_id"] == PROVIDER
        capsys.readouterr()
        assert main(["run", "--config", str(config_path)]) == 1
        _, err = capsys.readouterr()
        shipped = {
            line.split(" org=")[1].split(" ")[0]: int(line.split(" shipped=")[1].split(" ")[0])
            for line in err.splitlines()
            if "run summary" in line
        }
        assert shipped == {ORG_A: 0, ORG_B: 20, "provider:" + PROVIDER: 2}
        assert f"org {ORG_A}: Directory Insights is not enabled" in err
    assert main(["sandbox", "--no-insights", ORG_A]) == 2
    assert "--no-insights " + ORG_A in capsys.readouterr().err
