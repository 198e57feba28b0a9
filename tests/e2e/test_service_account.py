"""JumpCloud service accounts (OAuth client credentials) end to end, real HTTP, no patching.

The simulator's /oauth2/token issues random tokens with a TTL; the collector must obtain one,
send it as Bearer with x-org-id, refresh it before it expires (and once on a 401), fail fast
on bad credentials naming the keys, and never print the client secret or a token.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from conftest import (
    CX_KEY,
    JC_KEY,
    ORG_A,
    ORG_B,
    SA_CLIENT_ID,
    SA_SECRET,
    Env,
    assert_nothing_recorded,
    counts,
    legacy_config,
    recent_events,
    sandbox_process,
)
from di2siem.timeutil import format_ms, now_ms
from di2siem_sandbox import CoralogixSink, JumpCloudSimulator
from di2siem_sandbox.events import generate_events

EVENTS_PATH = "/insights/directory/v1/events"


def sa_config(sim: JumpCloudSimulator, sink: CoralogixSink, **jc: Any) -> dict[str, Any]:
    cfg = legacy_config(sim.url, sink.url)
    del cfg["jumpcloud"]["api_key"]
    cfg["jumpcloud"].update(
        {
            "client_id": SA_CLIENT_ID,
            "client_secret": SA_SECRET,
            "token_url": sim.url + "/oauth2/token",
            "org_ids": [ORG_A, ORG_B],
            **jc,
        }
    )
    return cfg


def make_sim(**kwargs: Any) -> JumpCloudSimulator:
    return JumpCloudSimulator(
        api_key=JC_KEY,
        org_ids=[ORG_A, ORG_B],
        service_accounts={SA_CLIENT_ID: SA_SECRET},
        **kwargs,
    )


@pytest.fixture
def sa_env(tmp_path, sink: CoralogixSink) -> Iterator[Env]:
    with make_sim() as sim:
        yield Env(tmp_path, sim, sink)


def assert_clean(env: Env, *texts: str) -> None:
    tokens = env.jc.issued_tokens
    for text in texts:
        assert SA_SECRET not in text
        for token in tokens:
            assert token not in text, "an access token leaked into the output"


def assert_exactly_once(env: Env, expected: list[dict[str, Any]]) -> None:
    ids = env.shipped_ids()
    assert [i for i, n in Counter(ids).items() if n > 1] == [], "duplicated ids"
    assert set(ids) == {e["id"] for e in expected}


def seed(sim: JumpCloudSimulator, n_a: int, n_b: int) -> list[dict[str, Any]]:
    end = now_ms() - 1000
    a = generate_events(n_a, end - 30 * 60_000, end, seed=1, org=ORG_A)
    b = generate_events(n_b, end - 30 * 60_000, end, seed=2, org=ORG_B)
    sim.add_events(a, org=ORG_A)
    sim.add_events(b, org=ORG_B)
    return a + b


def test_service_account_msp_ships_everything(sa_env: Env, capsys) -> None:
    env = sa_env
    events = seed(env.jc, 150, 90)
    env.write(sa_config(env.jc, env.cx), log_level="debug")
    rc, out, err = env.run(capsys)
    assert rc == 0, err
    assert_exactly_once(env, events)
    assert env.jc.stats["tokens_issued"] == 1  # one token serves both orgs
    # new orgs share their first query: every request names its orgs (x-org-id lines)
    assert {o for r in env.jc.requests for o in r["org"].split(",")} == {ORG_A, ORG_B}
    assert_clean(env, out, err)

    rc, out, err = env.run(capsys)  # a new run, a new token; nothing new shipped
    assert rc == 0 and len(env.shipped()) == len(events)
    assert env.jc.stats["tokens_issued"] == 2
    assert_clean(env, out, err)


@pytest.mark.parametrize("honest", [True, False], ids=["refresh-before-expiry", "401-refresh"])
def test_token_expiry_mid_run_is_transparent(tmp_path, sink, capsys, honest: bool) -> None:
    # honest: expires_in is the real TTL (refreshed early); otherwise the token dies while the
    # client still trusts it, so the events endpoint answers 401 and the client refreshes once
    ttl = {"token_ttl_s": 1} if honest else {"token_ttl_s": 0.5, "token_reported_ttl_s": 3600}
    with make_sim(**ttl) as sim:
        env = Env(tmp_path, sim, sink)
        events = seed(sim, 160, 40)
        # slow pages (the simulator checks the token after this delay, so keep it below the
        # client's refresh margin of 20% of the TTL)
        sim.inject_fault(None, count=-1, path=EVENTS_PATH, delay_s=0.1)
        env.write(sa_config(sim, sink, page_size=10), log_level="debug")
        rc, out, err = env.run(capsys)
        assert rc == 0, err
        assert_exactly_once(env, events)
        stats = sim.stats
        assert stats["tokens_issued"] >= 3, stats
        if honest:
            assert stats.get("expired_tokens_refused", 0) == 0
        else:
            assert stats["expired_tokens_refused"] >= 2
        assert counts(err)["retries"] == 0
        assert_clean(env, out, err)


def test_bad_secret_fails_fast_naming_the_keys(sa_env: Env, capsys) -> None:
    env = sa_env
    seed(env.jc, 5, 5)
    cfg = sa_config(env.jc, env.cx, client_secret="sa-wrong-secret-777")
    env.write(cfg, retry_base_delay_seconds=5)  # a retry would make this slow
    started = time.monotonic()
    rc, out, err = env.run(capsys)
    assert rc == 1
    assert "JumpCloud token endpoint answered 401: check jumpcloud.client_id / " in err
    assert "jumpcloud.client_secret" in err and "sa-wrong-secret-777" not in out + err
    assert time.monotonic() - started < 3
    assert_nothing_recorded(env.state_dir)
    assert env.cx.received == []

    rc, out, err = env.run(capsys, command="check")
    assert rc == 1
    assert "di2siem check jumpcloud token: FAILED - JumpCloud token endpoint answered 401" in out
    assert "di2siem check: FAILED" in out and "sa-wrong-secret-777" not in out + err


def test_token_endpoint_5xx_is_retried(sa_env: Env, capsys) -> None:
    env = sa_env
    events = seed(env.jc, 10, 10)
    env.jc.inject_fault(503, count=2, path="/oauth2/token")
    env.write(sa_config(env.jc, env.cx))
    rc, out, err = env.run(capsys)
    assert rc == 0, err
    assert "JumpCloud token" in err and "503" in err
    assert_exactly_once(env, events)
    assert_clean(env, out, err)


def test_check_online_obtains_a_token(sa_env: Env, capsys) -> None:
    env = sa_env
    seed(env.jc, 3, 3)
    env.write(sa_config(env.jc, env.cx))
    rc, out, err = env.run(capsys, command="check")
    assert rc == 0, out + err
    assert "auth=service_account" in out
    assert "di2siem check jumpcloud token: ok" in out
    for org in (ORG_A, ORG_B):
        assert f"di2siem check jumpcloud org={org}: ok" in out
    assert "accepted the service account token" in out
    assert env.jc.stats["tokens_issued"] == 1 and env.cx.received == []
    assert_clean(env, out, err)


def _drop(key: str):
    def apply(cfg: dict[str, Any]) -> None:
        cfg["jumpcloud"].pop(key, None)

    return apply


def _set(**values: Any):
    def apply(cfg: dict[str, Any]) -> None:
        cfg["jumpcloud"].update(values)

    return apply


CONFIG_ERRORS = {
    "both-modes": (
        _set(api_key=JC_KEY),
        "jumpcloud.api_key: set together with the service account keys (jumpcloud.client_id",
    ),
    "neither": (
        lambda c: [c["jumpcloud"].pop(k) for k in ("client_id", "client_secret")],
        "jumpcloud.api_key: required, missing or empty; set jumpcloud.api_key (admin API key), "
        "or jumpcloud.client_id + jumpcloud.client_secret",
    ),
    "no-org-ids": (
        _drop("org_ids"),
        "jumpcloud.org_ids: required with a service account (jumpcloud.client_id)",
    ),
    "empty-org-ids": (_set(org_ids=[]), "jumpcloud.org_ids: required with a service account"),
    "no-secret": (_drop("client_secret"), "jumpcloud.client_secret: required with"),
    "no-client-id": (_set(client_id=""), "jumpcloud.client_id: required with"),
    "http-token-url": (
        _set(token_url="http://auth.example.com/oauth2/token"),
        "jumpcloud.token_url: plain http:// is only allowed for loopback hosts",
    ),
}


@pytest.mark.parametrize("name", list(CONFIG_ERRORS))
def test_auth_config_errors_one_line_exit_2(sa_env: Env, capsys, name: str) -> None:
    env = sa_env
    mutate, message = CONFIG_ERRORS[name]
    cfg = sa_config(env.jc, env.cx)
    mutate(cfg)
    env.write(cfg)
    for command in ("run", "check"):
        rc, out, err = env.run(capsys, command=command)
        assert rc == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("di2siem: config error: "), err
        assert message in lines[0], lines[0]
        assert out == "" and SA_SECRET not in err
    assert env.jc.stats["requests"] == 0


def test_default_token_url_is_jumpcloud_oauth(sa_env: Env, tmp_path) -> None:
    from di2siem.config import parse

    cfg = sa_config(sa_env.jc, sa_env.cx)
    del cfg["jumpcloud"]["token_url"]
    parsed = parse(cfg, str(tmp_path / "c.json"))
    assert parsed.jumpcloud.token_url == "https://admin-oauth.id.jumpcloud.com/oauth2/token"
    assert parsed.jumpcloud.service_account and SA_SECRET in parsed.secrets
    assert SA_SECRET not in repr(parsed)


def test_simulator_token_rules(sa_env: Env) -> None:
    url = sa_env.jc.url
    body = {"service": ["all"], "start_time": format_ms(now_ms() - 60_000), "limit": 1}
    form = "grant_type=client_credentials&scope=api"
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = requests.post(url + "/oauth2/token", data=form, auth=(SA_CLIENT_ID, "nope"), timeout=5)
    assert bad.status_code == 401
    answer = requests.post(
        url + "/oauth2/token", data=form, auth=(SA_CLIENT_ID, SA_SECRET), headers=form_headers,
        timeout=5,
    )  # fmt: skip
    assert answer.status_code == 200
    data = answer.json()
    assert data["expires_in"] == 3600 and data["access_token"]
    bearer = {"Authorization": "Bearer " + data["access_token"]}
    events = url + EVENTS_PATH
    assert requests.post(events, json=body, headers=bearer, timeout=5).status_code == 400
    ok = requests.post(events, json=body, headers={**bearer, "x-org-id": ORG_A}, timeout=5)
    assert ok.status_code == 200
    unknown = {"Authorization": "Bearer not-a-token", "x-org-id": ORG_A}
    assert requests.post(events, json=body, headers=unknown, timeout=5).status_code == 401
    sa_env.jc.expire_tokens()
    again = requests.post(events, json=body, headers={**bearer, "x-org-id": ORG_A}, timeout=5)
    assert again.status_code == 401
    api_key = {"x-api-key": JC_KEY, "x-org-id": ORG_A}
    assert requests.post(events, json=body, headers=api_key, timeout=5).status_code == 200
    assert CX_KEY  # the sink fixture is shared with the other tests


def test_api_key_mode_unchanged(tmp_path, sink, capsys) -> None:
    # an API-key config against a simulator that also knows service accounts: no token
    with make_sim() as sim:
        env = Env(tmp_path, sim, sink)
        events = recent_events(20)
        sim.add_events(events, org=ORG_A)
        cfg = legacy_config(sim.url, sink.url)
        cfg["jumpcloud"]["org_ids"] = [ORG_A]
        env.write(cfg)
        rc, _, err = env.run(capsys)
        assert rc == 0, err
        assert_exactly_once(env, events)
        assert sim.stats.get("tokens_issued", 0) == 0


def test_sandbox_cli_service_account(tmp_path, capsys) -> None:
    import json

    from di2siem.cli import main

    config_path = tmp_path / "config.json"
    args = ["--backlog", "30", "--rate", "0", "--seed", "2"]
    args += ["--client-id", SA_CLIENT_ID, "--client-secret", SA_SECRET]
    with sandbox_process(*args, "--write-config", str(config_path)):
        jc = json.loads(config_path.read_text())["jumpcloud"]
        assert "api_key" not in jc and jc["client_id"] == SA_CLIENT_ID and jc["org_ids"]
        assert jc["token_url"] == jc["base_url"] + "/oauth2/token"
        capsys.readouterr()
        assert main(["run", "--config", str(config_path)]) == 0
        out, err = capsys.readouterr()
        assert counts(err)["shipped"] == 30 and SA_SECRET not in out + err
