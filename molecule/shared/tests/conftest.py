"""Shared helpers of the testinfra suites (run by Molecule's testinfra verifier over SSH).

Scenario expectations come from the Molecule inventory (host_vars in molecule.yml), so the
same tests serve every scenario: `hostvars` is that host's variables.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

# molecule/shared/sink_report.py: how each SIEM simulator's out file holds an event
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sink_report import event_of

SINK_OUT = "/var/lib/di2siem-sandbox/sink.jsonl"
CONFIG = "/etc/di2siem/config.json"
CREDENTIALS = "/etc/di2siem/credentials.json"
ENV_FILE = "/etc/di2siem/environment"
VENV_BIN = "/opt/di2siem/venv/bin/di2siem"
# the sandbox's credentials: JumpCloud, Coralogix, the proxy, Splunk HEC, Elasticsearch, Sentinel
SECRETS = (
    "sandbox-jumpcloud-key",
    "sandbox-coralogix-key",
    "sandbox-proxy-password",
    "5a4d3c2b-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
    "c2FuZGJveC1rZXktaWQ6c2FuZGJveC1lbGFzdGljc2VhcmNoLWtleQ==",
    "sandbox-sentinel-secret",
)
EVENTS_TIMEOUT_S = float(os.environ.get("DI2SIEM_EVENTS_TIMEOUT", "150"))


@pytest.fixture(scope="session")
def hostvars():
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("MOLECULE_INVENTORY_FILE is not set: run through molecule verify")
    runner = testinfra.utils.ansible_runner.AnsibleRunner(inventory)
    name = runner.get_hosts("all")[0]
    return runner.get_variables(name)


@pytest.fixture(scope="session")
def scheduler(hostvars):
    return hostvars.get("di2siem_scheduler", "cron")


@pytest.fixture(scope="session")
def siem_format(hostvars):
    return hostvars.get("di2siem_siem_format", "coralogix")


def sim_stats(host, port):
    out = host.check_output(f"curl -fsS http://127.0.0.1:{port}/_sim/stats")
    return json.loads(out)


def backlog_size(host):
    stored = sim_stats(host, 8400).get("events_stored", {})
    return sum(stored.values()) if isinstance(stored, dict) else int(stored)


def sink_records(host):
    f = host.file(SINK_OUT)
    if not f.exists:
        return []
    return [json.loads(line) for line in f.content_string.splitlines() if line.strip()]


def wait_for_all_events(host, timeout_s=EVENTS_TIMEOUT_S):
    """Poll the sink's out file until every event of the JumpCloud simulator arrived."""
    deadline = time.monotonic() + timeout_s
    expected = backlog_size(host)
    records = []
    while True:
        records = sink_records(host)
        ids = {event_of(r).get("id") for r in records}
        if expected and len(ids) >= expected:
            return expected, records
        if time.monotonic() > deadline:
            pytest.fail(
                f"after {timeout_s:.0f} s the sink holds {len(ids)} distinct events of "
                f"{expected}; scheduled runs:\n{run_log(host)[-3000:]}"
            )
        time.sleep(3)


def run_log(host):
    """What the scheduled job printed: cron's log file, or the journal of di2siem.service."""
    out = host.run(
        "cat /var/log/di2siem/di2siem.log 2>/dev/null;"
        " journalctl -u di2siem.service --no-pager -o cat 2>/dev/null"
    )
    return out.stdout
