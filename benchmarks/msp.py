"""MSP benchmark: many orgs per run behind a real API's round trip (a script, not a test).

The JumpCloud simulator answers every API request after ``--latency-ms`` (default 200, about
a real round trip), in a process of its own; each of ``--orgs`` orgs holds ``--events`` new
events. ``di2siem run`` runs as cron runs it (``run_time_budget_seconds`` 50) until every org
has been served once, and reports per run: orgs served, events shipped, JumpCloud requests
per minute, peak RSS, CPU time per org. The first pass serves new orgs (each its own stream);
then ``--steady-passes`` times (default 1) every org gets ``--events`` new events and runs go
on until every org was served again: the steady state, where caught-up orgs share queries
(``--shared``: jumpcloud.shared_query_max_orgs, 1 turns sharing off). Requests per run are
requests per minute when cron starts one run a minute; ``req/min`` is the rate within a run.
At the end: every event shipped exactly once?

Usage: ``python benchmarks/msp.py [--orgs 1000] [--events 3] [--parallel 8] [--rate 5]
[--shared 50] [--steady-passes 1]`` (``--rate``: jumpcloud.max_requests_per_second).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from bench import CORALOGIX_KEY, JUMPCLOUD_KEY, free_port, peak_rss_kib, wait_until_listening


def org_ids(count: int) -> list[str]:
    return [f"{n:024x}" for n in range(1, count + 1)]


def start_simulators(
    orgs: list[str], events: int, latency_ms: float, sink_out: Path
) -> tuple[subprocess.Popen, subprocess.Popen, str, str]:
    jc_port, cx_port = free_port(), free_port()
    base = [sys.executable, "-m", "di2siem_sandbox", "--rate", "0"]
    jc_cmd = [
        *base, "--only", "jumpcloud", "--jumpcloud-port", str(jc_port),
        "--jumpcloud-key", JUMPCLOUD_KEY, "--backlog", str(events), "--backlog-days", "0.5",
        "--latency-ms", str(latency_ms),
    ]  # fmt: skip
    for org in orgs:
        jc_cmd += ["--org-id", org]
    cx_cmd = [
        *base, "--only", "coralogix", "--coralogix-port", str(cx_port),
        "--coralogix-key", CORALOGIX_KEY, "--sink-count-only", "--sink-out", str(sink_out),
    ]  # fmt: skip
    jc = subprocess.Popen(jc_cmd, stdout=subprocess.DEVNULL)
    cx = subprocess.Popen(cx_cmd, stdout=subprocess.DEVNULL)
    wait_until_listening(jc_port, jc, timeout_s=600)
    wait_until_listening(cx_port, cx, timeout_s=60)
    return jc, cx, f"http://127.0.0.1:{jc_port}", f"http://127.0.0.1:{cx_port}"


def write_config(directory: Path, jc_url: str, cx_url: str, orgs: list[str], args) -> Path:
    config = {
        "jumpcloud": {
            "api_key": JUMPCLOUD_KEY,
            "base_url": jc_url,
            "org_ids": orgs,
            "initial_days_back": -1,
            "max_requests_per_second": args.rate,
            "shared_query_max_orgs": args.shared,
        },
        "siem": {
            "format": "coralogix",
            "url": f"{cx_url}/logs/v1/singles",
            "api_key": CORALOGIX_KEY,
            "batch_delay_milliseconds": 0,
        },
        "state_dir": str(directory / "state"),
        "run_time_budget_seconds": args.budget,
        "parallel_orgs": args.parallel,
        "log_level": "info",
    }
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def jc_requests(jc_url: str) -> int:
    """JumpCloud API requests answered so far (events, count; not the control API)."""
    stats = requests.get(f"{jc_url}/_sim/stats", timeout=30).json()
    return sum(
        sum(statuses.values())
        for path, statuses in stats["by_path"].items()
        if path.startswith("/insights/")
    )


def one_run(config: Path, jc_url: str) -> dict[str, Any]:
    executable = shutil.which("di2siem")
    if executable is None:
        raise SystemExit("di2siem is not installed: pip install -e . first")
    requests_before = jc_requests(jc_url)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        [executable, "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    peak = 0
    lines: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:  # read as it comes (a pipe must not fill up)
        lines.append(line)
        peak = max(peak, peak_rss_kib(process.pid))
    process.wait()
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    summaries = [line for line in lines if "run summary" in line]
    served = [line.split(" org=")[1].split()[0] for line in summaries if "status=ok" in line]
    peaks = [float(p.split("peak_rss_mb=")[1].split()[0]) for p in summaries if "peak_rss" in p]
    finished = [line for line in lines if "run finished" in line]
    shared = int(finished[-1].split("shared_queries=")[1].split()[0]) if finished else 0
    sent = jc_requests(jc_url) - requests_before
    return {
        "rc": process.returncode,
        "wall_s": wall,
        "orgs_served": len(served),
        "served": served,
        "orgs_failed": sum(1 for line in summaries if "status=failed" in line),
        "jc_requests": sent,
        "shared_queries": shared,
        "requests_per_min": sent / wall * 60,
        "peak_rss_mib": max([peak / 1024, *peaks]),
        "cpu_s": cpu,
        "cpu_ms_per_org": cpu / max(1, len(served)) * 1000,
    }


def add_events(jc_url: str, per_org: int, seed: int) -> None:
    """``per_org`` new events for every org, stamped within the last minute."""
    now = int(time.time() * 1000)
    body = {"generate": per_org, "start": now - 60_000, "end": now - 1000, "seed": seed}
    requests.post(f"{jc_url}/_sim/events", json=body, timeout=600).raise_for_status()


def serve_every_org(config: Path, jc_url: str, args) -> int:
    """Runs (as cron would) until every org was served once, at most ``--max-runs``; prints
    each run's figures; how many orgs were served."""
    served_ever: set[str] = set()
    for number in range(1, args.max_runs + 1):
        figures = one_run(config, jc_url)
        served_ever.update(figures["served"])
        print(
            f"run {number}: rc={figures['rc']} wall={figures['wall_s']:.1f}s "
            f"orgs_served={figures['orgs_served']} failed={figures['orgs_failed']} "
            f"jc_requests={figures['jc_requests']} shared_queries={figures['shared_queries']} "
            f"req/min={figures['requests_per_min']:.0f} "
            f"peak_rss={figures['peak_rss_mib']:.1f}MiB "
            f"cpu={figures['cpu_s']:.1f}s cpu/org={figures['cpu_ms_per_org']:.1f}ms",
            flush=True,
        )
        if len(served_ever) >= args.orgs:
            break
    return len(served_ever)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=3, help="new events per org")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--parallel", type=int, default=8, help="parallel_orgs")
    parser.add_argument("--rate", type=float, default=5.0, help="max_requests_per_second")
    parser.add_argument("--budget", type=float, default=50.0, help="run_time_budget_seconds")
    parser.add_argument("--max-runs", type=int, default=30, help="runs per pass at most")
    parser.add_argument("--shared", type=int, default=50, help="shared_query_max_orgs")
    parser.add_argument("--steady-passes", type=int, default=1, help="passes after the first")
    args = parser.parse_args()
    orgs = org_ids(args.orgs)
    with tempfile.TemporaryDirectory(prefix="di2siem-msp-") as tmp:
        directory = Path(tmp)
        sink_out = directory / "sink.jsonl"
        jc, cx, jc_url, cx_url = start_simulators(orgs, args.events, args.latency_ms, sink_out)
        try:
            config = write_config(directory, jc_url, cx_url, orgs, args)
            print(
                f"orgs={args.orgs} events/org={args.events} latency_ms={args.latency_ms:g} "
                f"parallel_orgs={args.parallel} max_requests_per_second={args.rate:g} "
                f"shared_query_max_orgs={args.shared} budget_s={args.budget:g}"
            )
            complete_passes = 0
            for pass_number in range(args.steady_passes + 1):
                if pass_number:  # the steady state: a few new events for every org
                    add_events(jc_url, args.events, seed=pass_number + 1)
                label = "first pass (new orgs)" if not pass_number else f"steady pass {pass_number}"
                print(label, flush=True)
                if serve_every_org(config, jc_url, args) == args.orgs:
                    complete_passes += 1
            ids = Counter()
            with sink_out.open() as fh:
                for line in fh:
                    entry = json.loads(line)["record"]  # a /logs/v1/singles entry
                    ids[entry["text"]["id"]] += 1
            expected = args.orgs * args.events * (args.steady_passes + 1)
            doubled = sum(n - 1 for n in ids.values())
            print(
                f"{complete_passes} of {args.steady_passes + 1} passes served every org; "
                f"events shipped {len(ids)} of {expected} expected, doubled {doubled}"
            )
            complete = complete_passes == args.steady_passes + 1 and len(ids) == expected
            return 0 if complete and doubled == 0 else 1
        finally:
            for process in (jc, cx):
                process.terminate()
                process.wait(timeout=60)


if __name__ == "__main__":
    raise SystemExit(main())
