"""The Prometheus textfile (di2siem_metrics_textfile_dir, scenarios that set it): where
node_exporter looks, readable by it, valid for Prometheus's own parser and for promtool, with
every family, labelled by org, and counting what the scheduled job shipped."""

import re
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import VENV_BIN, sink_records, wait_for_all_events
from di2siem.ops.metrics import COUNTERS, GAUGES

REPO = Path(__file__).resolve().parents[3]
# The families the collector declares (the same source as the installed wheel); their exact
# names and types are pinned by tests/e2e/test_metrics_heartbeat.py. Counters lose _total here.
FAMILIES = {
    re.sub("_total$", "", name): kind
    for names, kind in ((COUNTERS, "counter"), (GAUGES, "gauge"))
    for name, *_ in names
} | {"di2siem_build_info": "gauge"}


@pytest.fixture(scope="module")
def prom_path(hostvars):
    directory = hostvars.get("di2siem_metrics_textfile_dir") or ""
    if not directory:
        pytest.skip("this scenario sets no di2siem_metrics_textfile_dir")
    return f"{directory}/di2siem.prom"


def parse(text):
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    return families, samples


def test_textfile_where_node_exporter_reads_it(host, prom_path):
    f = host.file(prom_path)
    assert f.is_file
    assert (f.user, f.mode) == ("di2siem", 0o644)
    d = host.file(str(Path(prom_path).parent))
    assert (d.user, d.group, d.mode) == ("root", "di2siem", 0o775)
    # node_exporter runs as its own unprivileged user (prometheus on Debian)
    assert host.run(f"runuser -u nobody -- cat {prom_path}").rc == 0
    leftovers = host.check_output(f"ls -A {d.path}").split()
    assert leftovers == ["di2siem.prom"], "a temp file was left behind"


def test_textfile_parses_and_counts_what_the_schedule_shipped(host, prom_path):
    expected, _ = wait_for_all_events(host)
    # the sink has the events before the run writes its state and metrics: wait for that run
    deadline = time.monotonic() + 60
    while True:
        text = host.file(prom_path).content_string
        families, samples = parse(text)
        shipped = samples.get(("di2siem_events_shipped_total", (("org", "_default"),)))
        if shipped == len(sink_records(host)) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert shipped == len(sink_records(host)) >= expected
    for name, kind in FAMILIES.items():
        assert name in families, f"{name} missing"
        assert families[name].type == kind and families[name].documentation, name
    version = host.check_output(f"{VENV_BIN} --version").split()[-1]
    assert samples[("di2siem_build_info", (("version", version),))] == 1
    for (name, labels), _ in samples.items():
        if name != "di2siem_build_info":
            assert dict(labels)["org"] == "_default", (name, labels)

    def org(name):
        return samples[(name, (("org", "_default"),))]

    assert org("di2siem_last_run_success") == 1
    assert org("di2siem_run_failures_total") == 0
    now = float(host.check_output("date +%s"))
    assert now - 120 < org("di2siem_last_success_timestamp_seconds") <= now
    assert 0 < org("di2siem_cursor_timestamp_seconds") <= now


def test_textfile_passes_promtool_check_metrics(host, prom_path):
    fetched = subprocess.run(
        [str(REPO / "tests" / "support" / "fetch_promtool.sh"), str(REPO / ".cache" / "tools")],
        capture_output=True,
        text=True,
        check=False,
    )
    if fetched.returncode == 3:
        pytest.skip(fetched.stderr.strip())
    assert fetched.returncode == 0, f"cannot fetch promtool: {fetched.stderr}"
    text = host.file(prom_path).content_string
    checked = subprocess.run(
        [fetched.stdout.strip(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
