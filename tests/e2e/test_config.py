"""Configuration: defaults, legacy keys, regions, TLS rules, one-line errors, `check`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import (
    CX_KEY,
    JC_KEY,
    Env,
    assert_no_secrets,
    di2siem_executable,
    legacy_config,
    recent_events,
)
from di2siem import __version__
from di2siem.cli import main
from di2siem.config import load, parse, permission_warning
from di2siem.errors import ConfigError

LEGACY_FILE = {
    "jumpcloud": {
        "api_key": JC_KEY,
        "json_depth": 10,
        "timestamp_field_name": "timestamp",
        "initial_days_back": -1,
    },
    "siem": {
        "format": "json_lines",
        "url": "https://ingress.eu1.coralogix.com/logs/datastream",
        "method": "POST",
        "headers": {"private_key": CX_KEY},
        "content_type": "application/json",
        "batch_size": 1000,
        "batch_delay_milliseconds": 100,
        "timestamp_field_name": "jc_timestamp",
        "custom_log_fields": {"reqHost": "app", "customField": "sub", "severity": "info"},
    },
    "state": {"start_time": "2022-12-18T14:00:00.000Z", "end_time": "2022-12-18T14:57:03.801Z"},
}


def test_legacy_file_parses_unchanged_with_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "configurations.json"
    path.write_text(json.dumps(LEGACY_FILE))
    cfg = load(str(path))
    jc, siem = cfg.jumpcloud, cfg.siem
    assert jc.base_url == "https://api.jumpcloud.com"
    assert jc.events_url == "https://api.jumpcloud.com/insights/directory/v1/events"
    assert jc.services == ("all",) and jc.org_ids == () and jc.page_size == 10000
    assert jc.overlap_seconds == 300 and jc.json_depth == 10 and jc.initial_days_back == -1
    assert siem.format == "json_lines" and siem.method == "POST"
    assert siem.headers == (("private_key", CX_KEY),)
    assert siem.batch_size == 1000 and siem.max_batch_bytes == 1_500_000
    assert siem.batch_delay_milliseconds == 100 and siem.timestamp_field_name == "jc_timestamp"
    assert dict(siem.custom_log_fields) == {
        "reqHost": "app",
        "customField": "sub",
        "severity": "info",
    }
    assert cfg.state_dir == str(tmp_path / "di2siem-state")
    assert cfg.run_time_budget_seconds == 50 and cfg.max_retries == 5
    assert cfg.legacy_end_time_ms == 1671375423801
    assert set(cfg.secrets) == {JC_KEY, CX_KEY}
    assert JC_KEY not in repr(cfg.secrets.__class__)  # secrets tuple is not in the repr
    assert "secrets" not in repr(cfg)


def base(**siem: Any) -> dict[str, Any]:
    return {"jumpcloud": {"api_key": JC_KEY}, "siem": {"url": "https://x.example/in", **siem}}


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("EU1", "https://ingress.eu1.coralogix.com/logs/v1/singles"),
        ("eu2.coralogix.com", "https://ingress.eu2.coralogix.com/logs/v1/singles"),
        ("coralogix.com", "https://ingress.eu1.coralogix.com/logs/v1/singles"),
        ("app.coralogix.us", "https://ingress.us1.coralogix.com/logs/v1/singles"),
        ("https://app.cx498.coralogix.com/", "https://ingress.us2.coralogix.com/logs/v1/singles"),
        ("app.coralogix.in", "https://ingress.ap1.coralogix.com/logs/v1/singles"),
        ("AP2", "https://ingress.ap2.coralogix.com/logs/v1/singles"),
        ("gov1", "https://ingress.gov1.coralogixgov.us/logs/v1/singles"),
    ],
)
def test_coralogix_region_code_domain_or_ui_host(region: str, url: str) -> None:
    raw = {
        "jumpcloud": {"api_key": JC_KEY},
        "siem": {"format": "coralogix", "region": region, "api_key": CX_KEY},
    }
    cfg = parse(raw, "/etc/di2siem/config.json")
    assert cfg.siem.url == url
    assert cfg.siem.application_name == "jumpcloud"
    assert cfg.siem.subsystem_name == "directory-insights" and cfg.siem.severity == 3


def test_jumpcloud_region_and_base_url() -> None:
    raw = base()
    raw["jumpcloud"]["region"] = "eu"
    assert parse(raw, "/c.json").jumpcloud.base_url == "https://api.eu.jumpcloud.com"
    raw["jumpcloud"]["region"] = "IN"
    assert parse(raw, "/c.json").jumpcloud.base_url == "https://api.in.jumpcloud.com"
    raw["jumpcloud"]["base_url"] = "http://127.0.0.1:8400/"
    assert parse(raw, "/c.json").jumpcloud.base_url == "http://127.0.0.1:8400"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"])
def test_plain_http_is_fine_on_loopback(host: str) -> None:
    raw = base(url=f"http://{host}:8401/logs/datastream")
    raw["jumpcloud"]["base_url"] = f"http://{host}:8400"
    cfg = parse(raw, "/c.json")
    assert cfg.siem.url.startswith("http://")


def test_state_dir_relative_to_the_config_file() -> None:
    raw = {**base(), "state_dir": "st"}
    assert parse(raw, "/etc/di2siem/config.json").state_dir == "/etc/di2siem/st"
    raw["state_dir"] = "/var/lib/di2siem"
    assert parse(raw, "/etc/di2siem/config.json").state_dir == "/var/lib/di2siem"


def test_severity_names_and_services() -> None:
    raw = base(severity="Critical")
    raw["jumpcloud"]["services"] = ["sso", "directory", "sso"]
    cfg = parse(raw, "/c.json")
    assert cfg.siem.severity == 6 and cfg.jumpcloud.services == ("sso", "directory")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(cfg: dict[str, Any]) -> None:
        node = cfg
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is _DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value

    return apply


_DELETE = object()

BAD_CONFIGS = {
    "batch_size-abc": (
        _set("siem.batch_size", "abc"),
        'siem.batch_size: must be an integer between 1 and 10000 (got "abc"); fix the value in',
    ),
    "batch_size-0": (_set("siem.batch_size", 0), "siem.batch_size: must be an integer"),
    "missing-api-key": (
        _set("jumpcloud.api_key", _DELETE),
        "jumpcloud.api_key: required, missing or empty; set jumpcloud.api_key",
    ),
    "empty-api-key": (_set("jumpcloud.api_key", ""), "jumpcloud.api_key: required"),
    "format": (_set("siem.format", "xml"), "siem.format: must be one of json_lines"),
    "http-remote-siem": (
        _set("siem.url", "http://siem.example.com/logs"),
        "siem.url: plain http:// is only allowed for loopback hosts",
    ),
    "http-remote-jumpcloud": (
        _set("jumpcloud.base_url", "http://10.1.2.3:8400"),
        "jumpcloud.base_url: plain http:// is only allowed for loopback hosts",
    ),
    "ftp-url": (_set("siem.url", "ftp://x/y"), "siem.url: must be an https:// URL"),
    "jc-region": (
        lambda c: c["jumpcloud"].update(region="mars", base_url=None),
        "jumpcloud.region: must be one of us, eu",
    ),
    "page_size": (_set("jumpcloud.page_size", 20000), "jumpcloud.page_size: must be an integer"),
    "overlap": (_set("jumpcloud.overlap_seconds", -5), "jumpcloud.overlap_seconds: must be"),
    "days-back": (_set("jumpcloud.initial_days_back", 3), "jumpcloud.initial_days_back: must"),
    "services": (
        _set("jumpcloud.services", ["Bogus Name"]),
        'jumpcloud.services: not a service name "Bogus Name"',
    ),
    "org_ids": (_set("jumpcloud.org_ids", [1]), "jumpcloud.org_ids: must be a list"),
    "headers": (_set("siem.headers", ["x"]), "siem.headers: must be an object"),
    "header-value": (_set("siem.headers.private_key", 5), "siem.headers.private_key: must be"),
    "severity": (_set("siem.severity", 9), "siem.severity: must be 1..6"),
    "method": (_set("siem.method", "GET"), "siem.method: must be POST, PUT or PATCH"),
    "legacy-end-time": (_set("state.end_time", "yesterday"), "state.end_time: not an RFC 3339"),
    "log_level": (_set("log_level", "loud"), "log_level: must be one of"),
    "budget": (_set("run_time_budget_seconds", 0), "run_time_budget_seconds: must be"),
    "parallel_orgs": (
        _set("parallel_orgs", 0),
        "parallel_orgs: must be an integer between 1 and 64",
    ),
    "rate": (
        _set("jumpcloud.max_requests_per_second", 0),
        "jumpcloud.max_requests_per_second: must be a number between 0.1 and 100",
    ),
    "ca_bundle": (_set("siem.ca_bundle", "/nonexistent/ca.pem"), "siem.ca_bundle: CA bundle"),
    "jumpcloud-not-object": (_set("jumpcloud", "x"), "jumpcloud: must be an object"),
    "coralogix-no-key": (
        lambda c: c.update(siem={"format": "coralogix", "region": "EU1"}),
        'siem.api_key: required for siem.format "coralogix"',
    ),
    "coralogix-bad-region": (
        lambda c: c.update(siem={"format": "coralogix", "region": "moon", "api_key": "k"}),
        'siem.region: unknown Coralogix region "moon"',
    ),
    "no-url": (_set("siem.url", _DELETE), "siem.url: required, missing or empty"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_one_line_exit_2_state_untouched(env: Env, capsys, name: str) -> None:
    mutate, message = BAD_CONFIGS[name]
    env.write()
    env.state_file.parent.mkdir(parents=True)
    env.state_file.write_bytes(b'{"version":2,"org":"_default","cursor":null,"recent_ids":{}}\n')
    env.edit(mutate)
    before = env.state_file.read_bytes()
    for command in ("run", "check"):
        rc, out, err = env.run(capsys, command=command)
        assert rc == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("di2siem: config error: "), err
        assert message in lines[0], lines[0]
        assert out == ""
    assert env.state_file.read_bytes() == before
    assert env.jc.stats["requests"] == 0 and env.cx.stats["requests"] == 0


def test_invalid_json_and_missing_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"jumpcloud": {,}')
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("di2siem: config error: (file): invalid JSON at line 1 column")
    assert main(["check", "--offline", "--config", str(tmp_path / "missing.json")]) == 2
    assert "--config: file not found" in capsys.readouterr().err


def test_a_top_level_array_is_refused_naming_the_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.json"
    path.write_text("[]")
    assert main(["check", "--offline", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"di2siem: config error: (top level): {path} holds a JSON array, not an object; make "
        'the whole file one object: {"jumpcloud": {...}, "siem": {...}}\n'
    )


ORG = "5f1b0c2e8d3a4b0012340001"


@pytest.mark.parametrize(
    ("org_ids", "message"),
    [
        ("abc", 'jumpcloud.org_ids: must be a list of organisation ids, not a string (got "abc")'
         '; write it as a list: "org_ids": ["5f1b0c2e8d3a4b0012340001", ...]'),
        ([ORG, ORG[:-1]], f'jumpcloud.org_ids[1]: not a JumpCloud organization id "{ORG[:-1]}":'
         " must be 24 hex digits 0-9 a-f, e.g. 5f1b0c2e8d3a4b0012340001; copy the organization"
         " id from the JumpCloud console (Settings)"),
        ([ORG.upper()], f'jumpcloud.org_ids[0]: not a JumpCloud organization id "{ORG.upper()}"'),
        (["acme-prod"], 'jumpcloud.org_ids[0]: not a JumpCloud organization id "acme-prod"'),
    ],
)  # fmt: skip
def test_org_ids_must_be_a_list_of_jumpcloud_org_ids(
    env: Env, capsys, org_ids: Any, message: str
) -> None:
    env.write()
    env.edit(_set("jumpcloud.org_ids", org_ids))
    for extra, command in ((("--offline",), "check"), ((), "run")):
        rc, out, err = env.run(capsys, *extra, command=command)
        assert rc == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"di2siem: config error: {message}"), err
    assert not env.state_dir.exists() and env.jc.stats["requests"] == 0
    env.edit(_set("jumpcloud.org_ids", [ORG]))
    assert env.run(capsys, "--offline", command="check")[0] == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--conifg", "c.json"], "di2siem run: error: unknown option --conifg (did you "
         "mean --config?)"),
        (["check", "--config", "c.json", "--ofline"], "di2siem check: error: unknown option "
         "--ofline (did you mean --offline?)"),
        (["status", "--conifg=c.json"], "di2siem status: error: unknown option --conifg (did "
         "you mean --config?)"),
        (["state", "export", "--config", "c.json", "--orgg", ORG], "di2siem state export: error:"
         " unknown option --orgg (did you mean --org?)"),
        (["state", "import", "--conifg", "c.json", "f.json"], "di2siem state import: error: "
         "unknown option --conifg (did you mean --config?)"),
        (["--conifg", "run"], "di2siem: error: unknown option --conifg (its options: --help, "
         "--version)"),
    ],
)  # fmt: skip
def test_an_unknown_option_is_named_with_the_closest_one(
    capsys, argv: list[str], expected: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and err.splitlines()[-1] == expected, err
    assert "required" not in err


def test_abbreviated_options_still_work(env: Env, capsys) -> None:
    env.write()
    capsys.readouterr()
    assert main(["check", "--conf", str(env.path), "--off"]) == 0
    assert "di2siem check config: ok" in capsys.readouterr().out


def test_state_dir_in_a_missing_directory_is_refused_and_nothing_created(env: Env, capsys) -> None:
    missing = env.tmp / "missing"
    env.write(state_dir=str(missing / "state"))
    rc, out, err = env.run(capsys)
    assert rc == 2 and out == ""
    assert (
        f"di2siem: config error: state_dir: {missing}, the parent of {missing / 'state'}, does "
        "not exist (nothing was created); fix state_dir, or create the parent directory first\n"
    ) in err
    rc, out, _ = env.run(capsys, command="check")
    assert (
        rc == 1
        and (
            f"di2siem check state_dir: FAILED - {missing}, the parent of {missing / 'state'}, does "
            "not exist (state_dir: fix state_dir, or create the parent directory first)"
        )
        in out
    )
    assert not missing.exists() and env.cx.received == []
    env.write()  # its parent exists: state_dir itself is made, 0700
    assert env.run(capsys)[0] == 0
    assert oct(env.state_dir.stat().st_mode & 0o777) == "0o700"


def test_secret_values_are_never_echoed_in_config_errors(env: Env, capsys) -> None:
    env.write()
    env.edit(_set("siem.headers.private_key", CX_KEY + "\n"))
    rc, _, err = env.run(capsys)
    assert rc == 2 and "siem.headers.private_key: contains a line break" in err


def test_usage_errors_exit_2_and_version(capsys) -> None:
    assert main([]) == 2
    assert main(["run"]) == 2
    assert main(["frobnicate"]) == 2
    capsys.readouterr()
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"di2siem {__version__}"


def test_console_script_version_and_exit_codes(tmp_path: Path) -> None:
    exe = di2siem_executable()
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and __version__ in result.stdout
    result = subprocess.run([exe, "run"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"jumpcloud": {"api_key": JC_KEY}, "siem": {"batch_size": "abc"}}))
    result = subprocess.run(
        [exe, "check", "--offline", "--config", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert_no_secrets(result.stdout, result.stderr)


# -- permissions -----------------------------------------------------------------------------


def test_permission_warning_rules(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{}")
    os.chmod(path, 0o600)
    assert permission_warning(str(path)) is None
    os.chmod(path, 0o644)
    assert "world-readable" in (permission_warning(str(path)) or "")
    os.chmod(path, 0o640)
    import grp

    members = grp.getgrgid(path.stat().st_gid).gr_mem
    if not members:  # a group with no listed members (like the installer's di2siem group)
        assert permission_warning(str(path)) is None


def test_world_readable_config_warns_on_run(env: Env, capsys) -> None:
    env.write()
    os.chmod(env.path, 0o644)
    rc, _, err = env.run(capsys)
    assert rc == 0 and "world-readable" in err


# -- check -----------------------------------------------------------------------------------


def test_check_offline_validates_only(tmp_path: Path, env: Env, capsys) -> None:
    # like Ansible's `validate: di2siem check --offline --config %s`: a temp file elsewhere
    rendered = tmp_path / "ansible-tmp" / "tmpXYZ"
    rendered.parent.mkdir()
    cfg = legacy_config(env.jc.url, env.cx.url)
    rendered.write_text(json.dumps(cfg))
    os.chmod(rendered, 0o600)
    capsys.readouterr()
    rc = main(["check", "--offline", "--config", str(rendered)])
    out, err = capsys.readouterr()
    assert_no_secrets(out, err)
    assert rc == 0, err
    assert "di2siem check config: ok" in out
    assert os.listdir(rendered.parent) == ["tmpXYZ"]  # no state dir created
    assert env.jc.stats["requests"] == 0 and env.cx.stats["requests"] == 0


def test_check_online_proves_both_sides_without_shipping(env: Env, capsys) -> None:
    env.jc.add_events(recent_events(5))
    env.write()
    rc, out, err = env.run(capsys, command="check")
    assert rc == 0, out + err
    for name in ("config", "state_dir", "jumpcloud", "siem"):
        assert f"di2siem check {name}: ok" in out
    assert "di2siem check: passed" in out
    assert env.cx.received == []
    assert not env.state_dir.exists()


@pytest.mark.parametrize(
    ("broken", "verdict"),
    [
        ("jumpcloud", "di2siem check jumpcloud: FAILED - JumpCloud answered 401: check "
         "jumpcloud.api_key"),
        ("siem", "di2siem check siem: FAILED - SIEM answered 403: check "
         "siem.headers.private_key"),
    ],
)  # fmt: skip
def test_check_online_names_the_wrong_key(env: Env, capsys, broken: str, verdict: str) -> None:
    cfg = legacy_config(env.jc.url, env.cx.url)
    if broken == "jumpcloud":
        cfg["jumpcloud"]["api_key"] = "jc-wrong-key-222"
    else:
        cfg["siem"]["headers"]["private_key"] = "cx-wrong-key-222"
    env.write(cfg)
    rc, out, _ = env.run(capsys, command="check")
    assert rc == 1
    assert verdict in out
    assert "di2siem check: FAILED" in out
    assert "wrong-key-222" not in out


def test_check_online_unreachable_endpoint(env: Env, capsys) -> None:
    cfg = legacy_config("http://127.0.0.1:9", env.cx.url)
    env.write(cfg, max_retries=1)
    rc, out, _ = env.run(capsys, command="check")
    assert rc == 1 and "di2siem check jumpcloud: FAILED - " in out
    assert "JumpCloud 127.0.0.1:9: connection refused (gave up after 2 attempts" in out
    assert "di2siem check siem: ok" in out


def test_config_error_class_line() -> None:
    err = ConfigError("siem.batch_size", 'must be an integer (got "x")')
    assert (
        err.line("/p.json")
        == 'siem.batch_size: must be an integer (got "x"); fix the value in /p.json'
    )
