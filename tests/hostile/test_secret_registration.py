"""Every command, against peers of our own that echo every credential they receive (the
x-api-key, the Bearer token, the token request's Basic credentials decoded and not, the SIEM
key) in their bodies, headers and error messages: no configured or obtained secret reaches
stdout or stderr, in any encoding. Secret registration is one mechanism (the command's
registry, required by JumpCloudClient), so no command can miss a secret it obtains.
Real HTTP on loopback; nothing on the HTTP path is patched."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import CX_KEY, JC_KEY, ORG_A, ORG_B, SA_CLIENT_ID, SA_SECRET, Env, legacy_config
from di2siem.cli import main
from di2siem.cli_parser import build_parser
from di2siem.source.client import JumpCloudClient
from di2siem.timeutil import now_ms
from di2siem_sandbox.events import generate_events
from hostile import Exchange, HostilePeer
from test_hostile_leaks import assert_no_secret_anywhere, encodings

TOKEN = "sa-token-7Hq2Lx9Vb4Nw8Rz3Kp6Yt"  # what the token endpoint issues: an obtained secret
PROXY_PASSWORD = "proxy-secret-4d2a9c"
ENV_FILE_PROXY = f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:9"  # loopback: never used
BASIC = base64.b64encode(f"{SA_CLIENT_ID}:{SA_SECRET}".encode()).decode()
EVENTS = "/insights/directory/v1/events"


def echo(ex: Exchange, *headers: str) -> tuple[str, dict[str, str]]:
    """The received credentials (and the Basic pair decoded) in every encoding we know: an
    error text, and headers carrying them raw."""
    values = [ex.request.headers.get(h, "") for h in headers]
    values = [v for v in values if v]
    for value in list(values):
        if value.startswith("Basic "):
            values.append(base64.b64decode(value[6:]).decode())
    forms = [form for value in values for form in encodings(value).values()]
    text = json.dumps({"message": "refused: " + " ".join(values), "forms": forms})
    return text + " raw=" + " ".join(values), {f"X-Echo-{i}": v for i, v in enumerate(values)}


def jumpcloud(ex: Exchange) -> None:
    """Tokens for the right Basic credentials; ORG_A's events (one page); everything else,
    /events/count included, a 400 that echoes the credentials it got."""
    text, headers = echo(ex, "authorization", "x-api-key")
    path, org = ex.request.path, ex.request.header_all("x-org-id")
    if path == "/oauth2/token":
        if ex.request.headers.get("authorization") != "Basic " + BASIC:
            return ex.reply(401, text, headers)
        return ex.reply(200, {"access_token": TOKEN, "expires_in": 3600, "echo": text}, headers)
    if path == EVENTS and org == [ORG_A]:
        end = now_ms() - 1000
        page = generate_events(3, end - 60_000, end, seed=5, org=ORG_A)
        return ex.reply(200, page, {**headers, "X-Limit": "1000"})
    ex.reply(400, text, headers)


class Siem:
    """Refuses with a 403 echoing its key until ``accepting``; then takes every batch."""

    def __init__(self) -> None:
        self.accepting = False
        self.peer = HostilePeer(self.behave)

    def behave(self, ex: Exchange) -> None:
        text, headers = echo(ex, "private_key", "authorization", "x-api-key")
        if self.accepting and ex.request.body:
            return ex.reply(200, "", headers)
        ex.reply(403, text, headers)


def commands(env: Env, env_file: Path, export: Path) -> list[tuple[str, list[str]]]:
    """Every command line, in an order where each has something to work on."""
    config = ["--config", str(env.path)]
    with_env = [*config, "--env-file", str(env_file)]
    return [
        ("check --offline", ["check", *with_env, "--offline"]),
        ("check", ["check", *with_env]),
        ("run (SIEM refusing)", ["run", *with_env]),
        ("run", ["run", *with_env]),
        ("run --dry-run", ["run", *with_env, "--dry-run"]),
        ("backfill --dry-run", ["backfill", *with_env, "--since", "-1d", "--dry-run"]),
        ("backfill", ["backfill", *with_env, "--since", "-1d"]),
        ("status", ["status", *with_env]),
        ("status --json", ["status", *with_env, "--json"]),
        ("status --online", ["status", *with_env, "--online"]),
        ("status --online --json", ["status", *with_env, "--online", "--json"]),
        ("state export", ["state", "export", *config, "--org", ORG_A]),
        ("state export --output", ["state", "export", *config, "--org", ORG_A, "--output",
                                   str(export)]),
        ("state import", ["state", "import", *config, str(export), "--org", ORG_A, "--force"]),
    ]  # fmt: skip


def subcommands() -> set[str]:
    """Every command the CLI has (state's actions as ``state <action>``)."""
    found = set()
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                found |= {f"{name} {a}" for n in nested for a in n.choices} or {name}
    return found


@pytest.mark.parametrize("auth", ("service_account", "api_key"))
def test_no_command_prints_a_secret_echoed_by_any_peer(
    env: Env, capsys, monkeypatch, tmp_path: Path, auth: str
) -> None:
    # the sandbox reads no configuration and talks to no peer: the only command left out
    covered = {" ".join(line[:2]) if line[0] == "state" else line[0] for _, line in
               commands(env, tmp_path, tmp_path)}  # fmt: skip
    assert covered | {"sandbox"} == subcommands()
    monkeypatch.setenv("HTTPS_PROXY", "")  # restored after the test (the env file sets it)
    env_file = tmp_path / "di2siem.env"
    env_file.write_text(f"HTTPS_PROXY={ENV_FILE_PROXY}\n")
    env_file.chmod(0o600)
    siem = Siem()
    with HostilePeer(jumpcloud) as jc, siem.peer:
        cfg: dict[str, Any] = legacy_config(jc.url, siem.peer.url)
        cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
        if auth == "service_account":
            del cfg["jumpcloud"]["api_key"]
            cfg["jumpcloud"].update(
                client_id=SA_CLIENT_ID, client_secret=SA_SECRET, token_url=jc.url + "/oauth2/token"
            )
        env.write(cfg, log_level="debug")
        rcs, outputs = {}, {}
        for name, argv in commands(env, env_file, tmp_path / "export.json"):
            if name == "run":
                siem.accepting = True
            capsys.readouterr()
            rcs[name] = main(argv)
            out, err = capsys.readouterr()
            assert ENV_FILE_PROXY not in out + err  # (its start, "http:/", is no secret)
            secrets = [JC_KEY, CX_KEY, PROXY_PASSWORD]
            if auth == "service_account":
                secrets += [SA_SECRET, BASIC, TOKEN]
            assert_no_secret_anywhere(out + err, *secrets)
            outputs[name] = out + err
        got = jc.requests()
    # the peers did echo: the secrets were there to leak, and the commands printed the echoes
    for name in (
        "check",
        "run (SIEM refusing)",
        "run",
        "backfill --dry-run",
        "backfill",
        "status --online",
        "status --online --json",
    ):
        assert "[redacted]" in outputs[name], (name, outputs[name])
    if auth == "service_account":
        assert any(r.headers.get("authorization") == "Bearer " + TOKEN for r in got)
        assert any(r.path == EVENTS + "/count" for r in got)
    else:
        assert all(r.headers.get("x-api-key") == JC_KEY for r in got)
    assert rcs == {
        "check --offline": 0,
        "check": 1,
        "run (SIEM refusing)": 1,
        "run": 1,  # ORG_A ships, ORG_B is refused with the echo
        "run --dry-run": 1,  # the peer's probe answer has no X-Search_after
        "backfill --dry-run": 1,  # /events/count is refused with the echo
        "backfill": 1,  # ORG_A ships, ORG_B is refused
        "status": 1,
        "status --json": 1,
        "status --online": 1,
        "status --online --json": 1,
        "state export": 0,
        "state export --output": 0,
        "state import": 0,
    }, rcs


def test_a_jumpcloud_client_cannot_be_built_without_the_registry(tmp_path: Path) -> None:
    from di2siem.config import parse
    from di2siem.log import Logger
    from di2siem.transport.retry import RetryPolicy

    cfg = parse(legacy_config("http://127.0.0.1:1", "http://127.0.0.1:2"), str(tmp_path / "c"))
    with pytest.raises(TypeError):
        JumpCloudClient(cfg.jumpcloud, RetryPolicy())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="secret registry"):
        JumpCloudClient(cfg.jumpcloud, RetryPolicy(), secrets=None)  # type: ignore[arg-type]
    log = Logger()
    JumpCloudClient(cfg.jumpcloud, RetryPolicy(), secrets=log).close()
    assert log.redact(f"key {JC_KEY}") == "key [redacted]"  # registered by the client itself
