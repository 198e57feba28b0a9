"""The role renders a configuration the collector reads for every intake format: the
format's di2siem_siem_* variables reach config.json (settings) and credentials.json (secrets),
and config.load parses them back into the intake's options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from di2siem import config
from test_instances import RENDER, ROLE, playbook

JC = {"di2siem_jumpcloud_api_key": "jc-key-for-tests"}
HOSTS = {
    "otlp": {
        "di2siem_siem_format": "otlp",
        "di2siem_siem_url": "https://otel.example.com:4318/v1/logs",
        "di2siem_siem_headers": {"Authorization": "Bearer otlp-token-for-tests"},
        "di2siem_siem_service_name": "di-prod",
    },
    "elasticsearch": {
        "di2siem_siem_format": "elasticsearch",
        "di2siem_siem_url": "https://es.example.com:9200",
        "di2siem_siem_api_key": "ZXMtaWQ6ZXMta2V5LWZvci10ZXN0cw==",
    },
    "sentinel": {
        "di2siem_siem_format": "sentinel",
        "di2siem_siem_endpoint": "https://di-abcd.westeurope-1.ingest.monitor.azure.com",
        "di2siem_siem_dcr_immutable_id": "dcr-0123456789abcdef0123456789abcdef",
        "di2siem_siem_tenant_id": "00000000-0000-0000-0000-000000000001",
        "di2siem_siem_client_id": "00000000-0000-0000-0000-000000000002",
        "di2siem_siem_client_secret": "sentinel-secret-for-tests",
    },
    "syslog": {
        "di2siem_siem_format": "syslog",
        "di2siem_siem_url": "tls://siem.example.com:6514",
        "di2siem_siem_facility": "auth",
        "di2siem_siem_hostname": "collector-1",
    },
    "splunk_hec": {
        "di2siem_siem_format": "splunk_hec",
        "di2siem_siem_url": "https://splunk.example.com:8088",
        "di2siem_siem_token": "11111111-2222-3333-4444-555555555555",
        "di2siem_siem_index": "jumpcloud",
        "di2siem_siem_ack": "true",
        "di2siem_siem_max_unacknowledged_batches": "2",
    },
}


def render(tmp_path: Path, hosts: dict[str, dict]) -> Path:
    """The role's config.json and credentials.json for each host (its vars and a JumpCloud
    key): <out>/<host>-config.json, <out>/<host>-credentials.json."""
    out = tmp_path / "out"
    out.mkdir()
    text = RENDER.format(
        role=ROLE, out=out, templates=json.dumps(["config.json", "credentials.json"])
    )
    credentials = {
        h: {"__di2siem_credentials_ref": str(out / f"{h}-credentials.json")} for h in hosts
    }
    result = playbook(tmp_path, text, {h: {**JC, **v, **credentials[h]} for h, v in hosts.items()})
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("role_intakes"), HOSTS)


@pytest.mark.parametrize("fmt", sorted(HOSTS))
def test_every_format_renders_a_config_the_collector_reads(rendered: Path, fmt: str) -> None:
    settings = json.loads((rendered / f"{fmt}-config.json").read_text(encoding="utf-8"))
    secrets = json.loads((rendered / f"{fmt}-credentials.json").read_text(encoding="utf-8"))
    for name, value in HOSTS[fmt].items():
        if "secret" in name or name.endswith(("_token", "_api_key", "_client_id", "_headers")):
            assert json.dumps(value) not in json.dumps(settings), f"{name} in config.json"
    parsed = config.load(str(rendered / f"{fmt}-config.json"))
    assert parsed.siem.format == fmt
    if fmt == "otlp":
        assert parsed.siem.options.service_name == "di-prod"
        assert secrets["siem"]["headers"] == HOSTS["otlp"]["di2siem_siem_headers"]
    if fmt == "elasticsearch":
        assert parsed.siem.options.data_stream == "logs-jumpcloud.directory_insights-default"
    if fmt == "sentinel":
        assert parsed.siem.url.startswith(HOSTS["sentinel"]["di2siem_siem_endpoint"])
        assert secrets["siem"]["client_secret"] == "sentinel-secret-for-tests"
    if fmt == "syslog":
        options = parsed.siem.options
        assert (options.framing, options.facility, options.hostname) == (
            "octet_counting",
            4,  # auth (RFC 5424 facility 4)
            "collector-1",
        )
    if fmt == "splunk_hec":
        options = parsed.siem.options
        assert (options.token, options.index, options.ack) == (
            HOSTS["splunk_hec"]["di2siem_siem_token"],
            "jumpcloud",
            True,
        )
        assert options.max_unacknowledged_batches == 2 and options.source is None


DEMO_VARS = Path(__file__).parents[2] / "molecule" / "shared" / "vars" / "intakes"


@pytest.fixture(scope="module")
def demo_rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """The role's config for each `make demo INTAKE=...` vars file (the role's part of it)."""
    import yaml

    demo = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in DEMO_VARS.glob("*.yml")}
    role_vars = {  # di2siem_sandbox_*: prepare.yml's, for the simulator
        name: {k: v for k, v in demo_vars.items() if not k.startswith("di2siem_sandbox_")}
        for name, demo_vars in demo.items()
    }
    out = render(tmp_path_factory.mktemp("demo_intakes"), role_vars)
    return out, demo


def test_the_demo_of_each_intake_points_the_role_at_its_sandbox_simulator(
    demo_rendered: tuple[Path, dict[str, dict]],
) -> None:
    """molecule/shared/vars/intakes/<name>.yml against di2siem-sandbox --intake <name> with
    those arguments: same port, same credentials, a config the collector reads."""
    from di2siem_sandbox import intakes

    out, demo = demo_rendered
    assert sorted(demo) == sorted(intakes.NAMES)
    for name, demo_vars in demo.items():
        args = demo_vars.get("di2siem_sandbox_args", [])
        assert demo_vars["di2siem_sandbox_intake"] == name
        port = intakes.PORTS[name]
        stats_port = intakes.SYSLOG_CONTROL_PORT if name == "syslog" else port
        assert demo_vars["di2siem_sandbox_stats_port"] == stats_port
        settings: dict = {"ack": "--splunk-hec-ack" in args}
        if "--tls-dir" in args:
            settings["ca_bundle"] = args[args.index("--tls-dir") + 1] + "/ca.pem"
        scheme = "tls" if name == "syslog" else "http"
        expected = intakes.siem_section(name, f"{scheme}://127.0.0.1:{port}", settings)
        settings_file = json.loads((out / f"{name}-config.json").read_text(encoding="utf-8"))
        secrets = json.loads((out / f"{name}-credentials.json").read_text(encoding="utf-8"))
        merged = {**settings_file["siem"], **secrets.get("siem", {})}
        assert {key: merged.get(key) for key in expected} == expected, name
        local = out / f"{name}-config.json"
        if "ca_bundle" in settings_file["siem"]:  # made on the target at start: one here
            (out / "ca.pem").write_text(json.dumps("not read at load"), encoding="utf-8")
            settings_file["siem"]["ca_bundle"] = str(out / "ca.pem")
            local = out / f"{name}-local-config.json"
            local.write_text(json.dumps(settings_file), encoding="utf-8")
            local.chmod(0o600)
        assert config.load(str(local)).siem.format == name
