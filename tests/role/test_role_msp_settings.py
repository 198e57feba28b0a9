"""The role's MSP run settings: di2siem_parallel_orgs, di2siem_jumpcloud_max_requests_per_second
and di2siem_jumpcloud_shared_query_max_orgs reach the rendered config.json as parallel_orgs,
jumpcloud.max_requests_per_second and jumpcloud.shared_query_max_orgs (defaults and set
values), the collector's own parser reads them back, and out-of-range values stop the preflight
with a message naming the variable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from di2siem import config
from test_instances import RENDER, ROLE, playbook

COMMON = {
    "di2siem_jumpcloud_api_key": "jc-key-for-tests",
    "di2siem_coralogix_api_key": "cx-key-for-tests",
    "di2siem_coralogix_region": "EU1",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{host: its rendered config.json} for the defaults and for set values."""
    tmp_path = tmp_path_factory.mktemp("msp_settings")
    out = tmp_path / "out"
    out.mkdir()
    templates = ["config.json", "credentials.json"]
    text = RENDER.format(role=ROLE, out=out, templates=json.dumps(templates))
    hosts = {
        "defaults": COMMON,
        "tuned": {
            **COMMON,
            "di2siem_parallel_orgs": 3,
            "di2siem_jumpcloud_max_requests_per_second": 0.5,
            "di2siem_jumpcloud_shared_query_max_orgs": 1,
        },
        # inventory files and -e give strings
        "strings": {
            **COMMON,
            "di2siem_parallel_orgs": "64",
            "di2siem_jumpcloud_max_requests_per_second": "100",
            "di2siem_jumpcloud_shared_query_max_orgs": "20",
        },
    }
    # the rendered config names the rendered credentials file (as configure.yml's validation does)
    for host, host_vars in hosts.items():
        hosts[host] = {
            **host_vars,
            "__di2siem_credentials_ref": str(out / f"{host}-credentials.json"),
        }
    result = playbook(tmp_path, text, hosts)
    assert result.returncode == 0, result.stdout + result.stderr
    return {host: out / f"{host}-config.json" for host in hosts}


@pytest.mark.parametrize(
    ("host", "parallel_orgs", "rate", "shared"),
    [("defaults", 8, 5.0, 50), ("tuned", 3, 0.5, 1), ("strings", 64, 100.0, 20)],
)
def test_rendered_config_carries_them(
    rendered, host: str, parallel_orgs: int, rate: float, shared: int
) -> None:
    raw = json.loads(rendered[host].read_text(encoding="utf-8"))
    assert raw["parallel_orgs"] == parallel_orgs
    assert isinstance(raw["parallel_orgs"], int)
    assert raw["jumpcloud"]["max_requests_per_second"] == rate
    assert raw["jumpcloud"]["shared_query_max_orgs"] == shared
    assert isinstance(raw["jumpcloud"]["shared_query_max_orgs"], int)
    parsed = config.load(str(rendered[host]))
    assert parsed.parallel_orgs == parallel_orgs
    assert parsed.jumpcloud.max_requests_per_second == rate
    assert parsed.jumpcloud.shared_query_max_orgs == shared


PREFLIGHT = """---
- name: Preflight only
  hosts: local
  gather_facts: false
  tasks:
    - name: The range rules (before any rule that needs facts)
      ansible.builtin.include_role:
        name: di2siem
        tasks_from: preflight.yml
"""


BAD = {"zero": (0, 0, 0), "above": (65, 101, 51), "not_numbers": (2.5, "fast", "all")}


def test_out_of_range_values_are_refused(tmp_path: Path) -> None:
    hosts = {
        name: {
            **COMMON,
            "di2siem_parallel_orgs": orgs,
            "di2siem_jumpcloud_max_requests_per_second": rate,
            "di2siem_jumpcloud_shared_query_max_orgs": shared,
        }
        for name, (orgs, rate, shared) in {**BAD, "edges": (64, 0.1, 1)}.items()
    }
    result = playbook(tmp_path, PREFLIGHT, hosts)
    assert result.returncode == 2, result.stdout + result.stderr
    # one line per failed loop item: "failed: [host] (item=variable) => {...}"
    failed = {
        (host, item["item"]["key"]): item["msg"]
        for host, body in re.findall(
            r"^failed: \[(\w+)\] \(item=\w+\) => (\{.*\})$", result.stdout, re.M
        )
        for item in [json.loads(body)]
    }
    rules = {
        "di2siem_parallel_orgs": "a whole number from 1 to 64",
        "di2siem_jumpcloud_max_requests_per_second": "from 0.1 to 100",
        "di2siem_jumpcloud_shared_query_max_orgs": "a whole number from 1 to 50",
    }
    expected = {
        (host, key): f"{key}={value} is out of range: set it to"
        for host, values in BAD.items()
        for key, value in zip(rules, values)
    }
    assert set(failed) == set(expected), result.stdout
    for (host, key), msg in failed.items():
        assert msg.startswith(expected[host, key]), msg
        assert rules[key] in msg, msg


def test_secrets_too_short_to_redact_stop_the_preflight(tmp_path: Path) -> None:
    """The collector refuses a secret under 8 characters at run time (exit 2); the preflight
    says so before anything is installed, naming the variable or header and never the value."""
    short = "s3cr3t"
    hosts = {
        "short_key": {**COMMON, "di2siem_coralogix_api_key": short},
        "short_header": {
            **COMMON,
            "di2siem_siem_format": "json_lines",
            "di2siem_siem_url": "https://siem.example/ingest",
            "di2siem_siem_headers": {"private_key": short, "x-token": "long-enough-value"},
        },
        "long_enough": {**COMMON, "di2siem_jumpcloud_api_key": "12345678"},
    }
    result = playbook(tmp_path, PREFLIGHT, hosts)
    assert result.returncode == 2, result.stdout + result.stderr
    failed = set(re.findall(r"^failed: \[(\w+)\] \(item=([\w-]+)\)", result.stdout, re.M))
    assert failed == {("short_key", "di2siem_coralogix_api_key"), ("short_header", "private_key")}
    assert "di2siem_siem_headers.private_key is shorter than 8 characters" in result.stdout
    assert short not in result.stdout + result.stderr
