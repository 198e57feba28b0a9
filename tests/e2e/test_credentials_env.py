"""``credentials_file`` (secrets apart from the diffable configuration) and ``--env-file``
(the job's environment, proxies above all): real runs against the simulators on loopback."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import CX_KEY, JC_KEY, SECRETS, Env, assert_no_secrets, recent_events
from di2siem.config import envfile, load
from di2siem.errors import ConfigError
from di2siem.transport.session import _proxies_for
from hostile import HostilePeer

PROXY_PASSWORD = "proxy-pass-7d2e9a41c0"


def split_secrets(env: Env, creds: dict | None = None, **config_extra) -> Path:
    """The configuration without its secrets, the secrets in credentials.json (0600)."""
    env.write()
    cfg = json.loads(env.path.read_text())
    secrets = creds or {
        "jumpcloud": {"api_key": cfg["jumpcloud"].pop("api_key")},
        "siem": {"headers": cfg["siem"].pop("headers")},
    }
    path = env.tmp / "credentials.json"
    path.write_text(json.dumps(secrets))
    os.chmod(path, 0o600)
    cfg.update(credentials_file="credentials.json", **config_extra)
    env.path.write_text(json.dumps(cfg))
    os.chmod(env.path, 0o644)  # holds no secret: readable by all without a warning
    return path


def test_credentials_file_run_ships_and_registers_the_secrets(env: Env, capsys) -> None:
    events = recent_events(30)
    env.jc.add_events(events)
    creds = split_secrets(env)
    assert JC_KEY not in env.path.read_text() and CX_KEY not in env.path.read_text()
    cfg = load(str(env.path))
    assert cfg.credentials_file == str(creds)
    assert {JC_KEY, CX_KEY} <= set(cfg.secrets)  # redacted like inline secrets
    assert cfg.secret_files == (str(creds),)
    rc, out, err = env.run(capsys)
    assert rc == 0, err
    assert sorted(env.shipped_ids()) == sorted(e["id"] for e in events)
    assert "readable" not in err and "not a known key" not in err
    rc, out, _ = env.run(capsys, "--offline", command="check")
    assert rc == 0 and "permissions" not in out


def test_credentials_file_is_checked_for_permissions(env: Env, capsys) -> None:
    creds = split_secrets(env)
    os.chmod(creds, 0o644)
    rc, out, _ = env.run(capsys, "--offline", command="check")
    assert rc == 0
    assert f"permissions: warning - {creds} is world-readable" in out
    assert str(env.path) not in out.split("permissions:", 1)[1]


def test_a_key_in_both_files_takes_the_credentials_value(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(3))
    split_secrets(env)
    env.edit(lambda c: c["jumpcloud"].update(api_key="stale-inline-key-0000"))
    rc, _, err = env.run(capsys)
    assert rc == 0, err
    assert len(env.shipped_ids()) == 3
    assert "jumpcloud.api_key is set in the configuration and in credentials_file" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "credentials_file: file not found: {path}; create it"),
        ("{", "credentials_file: invalid JSON at line 1 column 2"),
        ("[]", "credentials_file: {path} must hold a JSON object"),
        ('{"jumpcloud": "x"}', "credentials_file: {path}: jumpcloud must be an object"),
        (
            '{"jumpcloud": {"api-key": "k"}}',
            "credentials_file: {path}: jumpcloud.api-key is not a secret key "
            "(did you mean jumpcloud.api_key?); keep only jumpcloud.api_key,",
        ),
        ('{"state_dir": "/tmp"}', "credentials_file: {path}: state_dir is not a secret key"),
        (
            '{"siem": {"headers": {"private_key": "k"}}}',
            "jumpcloud.api_key: required, missing or empty; set jumpcloud.api_key (admin API key)"
            ", or jumpcloud.client_id + jumpcloud.client_secret (service account) in "
            "credentials_file {path}",
        ),
        (
            json.dumps({"jumpcloud": {"api_key": JC_KEY + "\n"}}),
            "jumpcloud.api_key (in {path}): contains a line break",
        ),
        (
            json.dumps(
                {"jumpcloud": {"api_key": JC_KEY}, "siem": {"headers": {"private_key": " x"}}}
            ),
            "siem.headers.private_key (in {path}): starts or ends with whitespace",
        ),
    ],
)
def test_credentials_file_errors_name_the_file_and_exit_2(
    env: Env, capsys, content: str | None, expected: str
) -> None:
    creds = split_secrets(env)
    if content is None:
        creds.unlink()
    else:
        creds.write_text(content)
    for command in ("run", "check"):
        rc, _, err = env.run(capsys, command=command)
        assert rc == 2
        assert err.count("\n") == 1
        assert err.startswith("di2siem: config error: " + expected.format(path=creds)), err
    assert not env.state_file.exists()


def test_legacy_inline_secrets_still_need_no_credentials_file(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(2))
    env.write()
    cfg = load(str(env.path))
    assert cfg.credentials_file is None and cfg.secret_files == (str(env.path),)
    rc, _, err = env.run(capsys)
    assert rc == 0 and len(env.shipped_ids()) == 2, err


# -- --env-file --------------------------------------------------------------------------------


def test_env_file_syntax_matches_systemd_environmentfile(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "# comment",
            "; also a comment",
            "",
            "PLAIN=a b c  ",
            '  QUOTED = "x \\"y\\" \\\\ \\$HOME \\` \\n"',
            "SINGLE='lit \\ \"$x\"'",
            "EMPTY=",
            "URL=http://proxy.example:3128",
        ]
    )
    assert envfile.parse(text, "f") == {
        "PLAIN": "a b c",
        "QUOTED": 'x "y" \\ $HOME ` \\n',
        "SINGLE": 'lit \\ "$x"',
        "EMPTY": "",
        "URL": "http://proxy.example:3128",
    }


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("export A=1", "line 2: not a NAME=value line"),
        ("no equals sign", "line 2: not a NAME=value line"),
        ("1A=x", "line 2: not a NAME=value line"),
        ('A="open', "line 2 (A): no closing double quote"),
        ('A="x"y', "line 2 (A): text after the closing quote"),
        ("A='x", "line 2 (A): unbalanced single quotes"),
        ("A=se\\cret", "line 2 (A): a quote or backslash in an unquoted value"),
    ],
)
def test_env_file_errors_name_the_line_and_exit_2(
    env: Env, capsys, line: str, problem: str
) -> None:
    env.write()
    path = env.tmp / "environment"
    path.write_text(f"OK=1\n{line}\n")
    rc, _, err = env.run(capsys, "--env-file", str(path))
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"di2siem: config error: --env-file {path} {problem}"), err
    assert "se\\cret" not in err and "open" not in err.split(problem)[1]
    rc, _, err = env.run(capsys, "--env-file", str(env.tmp / "missing"))
    assert rc == 2 and "config error: --env-file: file not found: " in err


def test_env_file_proxy_reaches_the_job_and_its_password_is_redacted(env: Env) -> None:
    """HTTPS_PROXY from the file (none in the process environment) carries a non-loopback
    host's requests as a CONNECT tunnel; the proxy's password never shows in the output."""
    env.write()
    env.edit(lambda c: c["jumpcloud"].update(base_url="https://api.jumpcloud.example"))
    environ = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    with HostilePeer(lambda ex: ex.reply(502, f"bad gateway {PROXY_PASSWORD}")) as proxy:
        proxy_url = f"http://user:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        path = env.tmp / "environment"
        path.write_text(f'HTTPS_PROXY="{proxy_url}"\nNO_PROXY=unrelated.example\n')
        os.chmod(path, 0o640)
        from conftest import di2siem_executable

        result = subprocess.run(
            [di2siem_executable(), "check", "--config", str(env.path), "--env-file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=environ,
        )
        seen = proxy.requests()
    assert result.returncode == 1, result.stdout + result.stderr
    assert seen and seen[0].method == "CONNECT" and seen[0].path == "api.jumpcloud.example:443"
    assert_no_secrets(result.stdout, result.stderr)
    assert PROXY_PASSWORD not in result.stdout + result.stderr
    assert "siem: ok" in result.stdout  # loopback SIEM: never through the proxy


def test_env_file_no_proxy_and_loopback_choose_no_proxy(monkeypatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    values = envfile.parse(
        "HTTPS_PROXY=http://proxy.internal:3128\nNO_PROXY=.corp.example,siem.example\n", "f"
    )
    for name in values:
        monkeypatch.setenv(name, "")
    envfile.apply(values)
    assert _proxies_for("https://api.jumpcloud.com/x")["https"] == "http://proxy.internal:3128"
    assert _proxies_for("https://siem.example/logs") == {}
    assert _proxies_for("https://a.corp.example/") == {}
    assert _proxies_for("http://127.0.0.1:8400/") == {}
    assert envfile.secrets(values) == []


def test_env_file_values_outside_logs_and_errors() -> None:
    assert set(SECRETS).isdisjoint(envfile.secrets({"OTHER": JC_KEY}))
    found = envfile.secrets({"https_proxy": "http://u:p%40ssword-9@proxy:3128"})
    assert "p%40ssword-9" in found and "p@ssword-9" in found


def test_a_short_proxy_password_is_redacted_in_its_url_never_alone() -> None:
    """A 3-character proxy password stays out of every line in its URL, its user:password
    pair and its Proxy-Authorization value, and ordinary text that contains it survives."""
    from di2siem.log import Logger

    url = "http://ops:p1n@proxy.internal:3128"
    found = envfile.secrets({"HTTPS_PROXY": url})
    assert "p1n" not in found and "ops:p1n" in found and url in found
    out = io.StringIO()
    log = Logger(stream=out)
    log.set_format("json")
    for secret in found:
        log.add_secret(secret)
    log.warning(f"proxy {url} refused ops:p1n (Basic b3BzOnAxbg==); the word p1neapple stays")
    record = json.loads(out.getvalue())
    assert "ops:p1n" not in out.getvalue() and "b3BzOnAxbg==" not in out.getvalue()
    assert record["msg"].endswith("the word p1neapple stays")
    with pytest.raises(ConfigError) as info:
        envfile.parse('A="p@ss', "f")
    assert "p@ss" not in str(info.value)
