"""Hostile peers and hostile inputs on the leak side: keys echoed back in every encoding,
header values HTTP cannot carry, unknown configuration keys, 2xx answers that are not a
delivery. Real HTTP on loopback; nothing on the HTTP path is patched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from conftest import CX_KEY, JC_KEY, Env, legacy_config, recent_events, summary
from di2siem.config import parse
from di2siem.errors import ConfigError
from hostile import Exchange, HostilePeer

# valid in an HTTP header, awkward everywhere else: quotes, a backslash, %, &, <
NASTY_JC_KEY = "jc-\"q'uo\\te%41&<b>-5f1a9c2e7b44d0"
NASTY_CX_KEY = "cx-\\b\"s%2F+l'a&sh-8d3b4e6f0a91c2"


def encodings(secret: str) -> dict[str, str]:
    """How a hostile server (or our own escaping) might print a secret."""
    return {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json-in-json": json.dumps(json.dumps(secret)[1:-1])[1:-1],
        "repr": repr(secret)[1:-1],
        "url": quote(secret, safe=""),
        "url-plus": quote_plus(secret),
        "head": secret[:6],  # the start of a secret cut by an excerpt
    }


def assert_no_secret_anywhere(text: str, *secrets: str) -> None:
    for secret in secrets:
        for name, form in encodings(secret).items():
            assert form not in text, f"the {name} form of a secret leaked"


def echo_everything(status: int, header: str):
    """An error answer that echoes the received credential in every encoding we know."""

    def behave(ex: Exchange) -> None:
        value = ex.request.headers.get(header, "")
        forms = encodings(value)
        body = {"message": f"bad key {value}", "escaped": forms["json"], "repr": forms["repr"]}
        text = json.dumps(body) + f" url={forms['url']} plus={forms['url-plus']}"
        ex.reply(status, text)

    return behave


def cut_in_half(status: int, header: str):
    """An error body whose first 200 characters end in the middle of the echoed key."""

    def behave(ex: Exchange) -> None:
        value = ex.request.headers.get(header, "")
        ex.reply(status, "x" * 190 + value + "y" * 100)

    return behave


def nasty_config(env: Env, jc_url: str, siem_url: str) -> None:
    cfg = legacy_config(jc_url, siem_url)
    cfg["jumpcloud"]["api_key"] = NASTY_JC_KEY
    cfg["siem"]["headers"]["private_key"] = NASTY_CX_KEY
    env.write(cfg)


@pytest.mark.parametrize("shape", (echo_everything, cut_in_half), ids=("echo", "cut"))
def test_jumpcloud_echoing_the_key_never_gets_it_printed(env: Env, capsys, shape) -> None:
    with HostilePeer(shape(401, "x-api-key")) as jc:
        nasty_config(env, jc.url, env.cx.url)
        rc, out, err = env.run(capsys)
        assert jc.requests()[0].headers["x-api-key"] == NASTY_JC_KEY  # sent as configured
        assert rc == 1
        assert "JumpCloud answered 401: check jumpcloud.api_key" in err
        assert "[redacted]" in err
        assert_no_secret_anywhere(out + err, NASTY_JC_KEY, NASTY_CX_KEY)
        rc, out, _ = env.run(capsys, command="check")
        assert rc == 1 and "[redacted]" in out
        assert_no_secret_anywhere(out, NASTY_JC_KEY, NASTY_CX_KEY)


@pytest.mark.parametrize("shape", (echo_everything, cut_in_half), ids=("echo", "cut"))
def test_siem_echoing_the_key_never_gets_it_printed(env: Env, capsys, shape) -> None:
    env.jc.add_events(recent_events(5))
    env.jc.api_key = NASTY_JC_KEY
    with HostilePeer(shape(400, "private_key")) as siem:
        nasty_config(env, env.jc.url, siem.url)
        rc, out, err = env.run(capsys)
        assert siem.requests()[0].headers["private_key"] == NASTY_CX_KEY
        assert rc == 1
        assert "SIEM answered 400" in err and "[redacted]" in err
        assert_no_secret_anywhere(out + err, NASTY_JC_KEY, NASTY_CX_KEY)


def test_keys_with_quotes_and_backslashes_work(env: Env, capsys) -> None:
    """Quotes and backslashes are legal in a header value: such keys are used as they are."""
    events = recent_events(12)
    env.jc.add_events(events)
    env.jc.api_key = NASTY_JC_KEY
    received: list[bytes] = []

    def accept(ex: Exchange) -> None:
        assert ex.request.headers["private_key"] == NASTY_CX_KEY
        received.append(ex.request.body)
        ex.reply(200, "")

    with HostilePeer(accept) as siem:
        nasty_config(env, env.jc.url, siem.url)
        rc, out, err = env.run(capsys)
    assert rc == 0, err
    shipped = [json.loads(line)["id"] for body in received for line in body.splitlines()]
    assert sorted(shipped) == sorted(e["id"] for e in events)
    assert_no_secret_anywhere(out + err, NASTY_JC_KEY, NASTY_CX_KEY)


# -- header values HTTP cannot carry: refused by the config check ----------------------------

UNCARRIABLE = {
    "leading tab": ("siem.headers.private_key", "\t" + CX_KEY, "starts or ends with whitespace"),
    "trailing space": ("jumpcloud.api_key", JC_KEY + " ", "starts or ends with whitespace"),
    "tab inside": ("jumpcloud.api_key", "jc-\t" + JC_KEY, "contains a control character"),
    "NUL": ("siem.headers.private_key", CX_KEY + "\x00x", "contains a control character"),
    "line break": ("siem.headers.private_key", CX_KEY + "\r\nX-Evil: 1", "contains a line break"),
    "cyrillic": ("jumpcloud.api_key", "ключ-" + JC_KEY, "contains a non-ASCII character"),
    "latin-1": ("siem.headers.private_key", "clé-" + CX_KEY, "contains a non-ASCII character"),
    "emoji": ("siem.api_key", CX_KEY + "🔑", "contains a non-ASCII character"),
    "org id": ("jumpcloud.org_ids", ["aaaa\nbbbb"], "contains a line break"),
    "content type": ("siem.content_type", "application/json\x7f", "contains a control character"),
}


@pytest.mark.parametrize("case", sorted(UNCARRIABLE))
def test_header_values_http_cannot_carry_are_refused(env: Env, capsys, case: str) -> None:
    key, value, problem = UNCARRIABLE[case]
    env.write()

    def apply(cfg: dict[str, Any]) -> None:
        *parents, name = key.split(".")
        node = cfg
        for parent in parents:
            node = node[parent]
        node[name] = value
        if key == "siem.api_key":
            cfg["siem"]["format"] = "coralogix"

    env.edit(apply)
    for command in ("run", "check"):
        rc, out, err = env.run(capsys, command=command)
        assert rc == 2, (out, err)
        assert out == "" and err.count("\n") == 1
        path = key + ("[0]" if key == "jumpcloud.org_ids" else "")
        assert err.startswith(f"di2siem: config error: {path}: {problem}"), err
        secret = value if isinstance(value, str) else value[0]
        assert secret.strip() not in err and repr(secret)[1:-1] not in err
    assert not env.state_dir.exists()


@pytest.mark.parametrize("name", ("private key", "x:y", "ключ", ""))
def test_header_names_http_cannot_carry_are_refused(env: Env, capsys, name: str) -> None:
    env.write()
    env.edit(lambda cfg: cfg["siem"]["headers"].update({name: "v"}))
    rc, _, err = env.run(capsys, "--offline", command="check")
    assert rc == 2 and err.count("\n") == 1
    assert "not a valid HTTP header name" in err


# -- unknown configuration keys --------------------------------------------------------------


def test_typos_are_refused_by_check_and_warned_about_by_run(env: Env, capsys) -> None:
    env.write()
    env.edit(
        lambda cfg: (
            cfg["siem"].update(batchsize=5),
            cfg["jumpcloud"].update(page_sise=5),
            cfg.update(run_time_budget=3, jumpclud={}),
        )
    )
    expected = [
        "siem.batchsize is not a known key (did you mean siem.batch_size?)",
        "jumpcloud.page_sise is not a known key (did you mean jumpcloud.page_size?)",
        "run_time_budget is not a known key (did you mean run_time_budget_seconds?)",
        "jumpclud is not a known key (did you mean jumpcloud?)",
    ]
    for offline in (("--offline",), ()):
        rc, out, err = env.run(capsys, *offline, command="check")
        assert rc == 2 and out == "", out
        assert sorted(err.splitlines()) == sorted(
            f"di2siem: config error: {line}; rename or remove it in {env.path}" for line in expected
        ), err
    assert env.jc.stats["requests"] == 0 and not env.state_dir.exists()
    env.jc.add_events(recent_events(3))
    rc, _, err = env.run(capsys)  # a scheduled run goes on: a newer role's key must not stop it
    assert rc == 0 and summary(err)["shipped"] == "3"
    for line in expected:
        assert re.search(r" warning di2siem " + re.escape(line + "; it is ignored"), err), line


def test_legacy_configuration_has_no_unknown_keys(tmp_path: Path) -> None:
    from test_config import LEGACY_FILE

    cfg = parse(LEGACY_FILE, str(tmp_path / "configurations.json"))
    assert cfg.unknown_keys == ()
    cfg = parse(legacy_config("http://127.0.0.1:1", "http://127.0.0.1:2"), str(tmp_path / "c"))
    assert cfg.warnings == () and cfg.unknown_keys == ()


def _documented_keys() -> dict[str, list[str]]:
    """Key names from the tables of docs/configuration.md, per section."""
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    keys: dict[str, list[str]] = {"jumpcloud": [], "siem": [], "": []}
    section = None
    key_table = False  # inside a "| key | default | meaning |" table
    for line in doc.splitlines():
        if not line.startswith("|"):
            key_table = False
        elif line.startswith("| key |"):
            key_table = True
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            section = (
                "jumpcloud"
                if heading == "`jumpcloud` section"
                else "siem"
                if heading == "`siem` section"
                else ""
                if heading.startswith(("Top-level keys", "Advanced keys"))
                else None
            )
        elif section is not None and key_table and line.startswith("| `"):
            keys[section].append(line.split("`")[1])
    return keys


def test_every_documented_key_is_known(tmp_path: Path) -> None:
    """Each documented key, present with a null value (= its default), draws no warning:
    the parser reads it (known keys are the ones the parser reads)."""
    documented = _documented_keys()
    assert len(documented["jumpcloud"]) > 10 and len(documented["siem"]) > 10
    assert "run_time_budget_seconds" in documented[""]
    for section, names in documented.items():
        for name in names:
            raw = legacy_config("http://127.0.0.1:1", "http://127.0.0.1:2")
            node = raw[section] if section else raw
            if name in node:
                continue  # set in the legacy file already (test above)
            node[name] = None
            try:
                warnings = parse(raw, str(tmp_path / "c.json")).warnings
            except ConfigError as exc:  # null refused: proves the parser read that key
                assert exc.key_path == (f"{section}.{name}" if section else name)
                continue
            assert warnings == (), (section, name, warnings)


# -- 2xx answers that are not a delivery -----------------------------------------------------

NOT_DELIVERED = {
    "207": (207, {"items": []}, "207 is a multi-status answer"),
    "errors true": (200, {"errors": True, "items": [{"status": 400}]}, "its body reports an error"),
    "error": (200, {"error": "index closed"}, "its body reports an error"),
    "success false": (202, {"success": False}, "its body reports an error"),
}


@pytest.mark.parametrize("case", sorted(NOT_DELIVERED))
def test_2xx_that_reports_a_refusal_is_not_a_delivery(env: Env, capsys, case: str) -> None:
    status, body, message = NOT_DELIVERED[case]
    events = recent_events(8)
    env.jc.add_events(events)
    with HostilePeer(lambda ex: ex.reply(status, body)) as siem:
        env.write()
        env.edit(lambda cfg: cfg["siem"].update(url=siem.url + "/logs/datastream"))
        rc, _, err = env.run(capsys)
        assert len(siem.requests()) == 1, "not retried within the run"
    assert rc == 1
    assert f"SIEM answered {status} but {message}" in err
    assert "not counted as delivered" in err
    assert summary(err)["shipped"] == "0" and summary(err)["status"] == "failed"
    env.write()
    rc, _, err = env.run(capsys)
    assert rc == 0 and sorted(env.shipped_ids()) == sorted(e["id"] for e in events)


@pytest.mark.parametrize("body", ("", "OK", '{"errors": false, "items": []}', '{"success": true}'))
def test_plain_2xx_is_a_delivery(env: Env, capsys, body: str) -> None:
    events = recent_events(8)
    env.jc.add_events(events)
    with HostilePeer(lambda ex: ex.reply(200, body)) as siem:
        env.write()
        env.edit(lambda cfg: cfg["siem"].update(url=siem.url + "/logs/datastream"))
        rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert summary(err)["shipped"] == "8"
