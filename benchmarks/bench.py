"""Benchmark the collector against the local simulators (a script, not a test).

Reports:
- events/s shipping a backlog (default 200k) from the JumpCloud simulator to the Coralogix sink
  with ``di2siem run`` (one process, as cron runs it);
- the ceiling: events/s of a raw page download + ``json.loads`` with no processing;
- the collector's peak RSS with a 20k and a 200k backlog (it must stay flat);
- wall time of an empty poll (a second run that finds nothing new);
- ``--empty-poll``: that alone, as cron runs it every minute: one org caught up to the
  minute (its window recent enough that the run probes JumpCloud's clock first: two
  requests), nothing new; wall min/median/max and peak RSS of ``--runs`` runs, and the
  interpreter's import time (``-X importtime``) of one;
- CPU time per event of each process while shipping (collector, JumpCloud simulator, sink)
  and of the ceiling's client: on a 2-core machine they compete for the same cores.

Each simulator runs in a process of its own so that the collector's figures are its own.
Ship and ceiling rates are the median of ``--repeats`` runs (interleaved, the same pages from
the same simulator; each ship run starts from empty state and an emptied sink).
``--intake NAME`` ships to that intake's simulator instead of the Coralogix sink (the default);
``--intakes all`` measures every intake in turn and ends with one table of them all. The
intake simulators count what they accept and keep none of it (``--sink-count-only``).
Usage: ``python benchmarks/bench.py [--backlog 200000] [--small-backlog 20000] [--repeats 3]
[--intake NAME | --intakes all]`` or ``python benchmarks/bench.py --empty-poll [--runs 15]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median

import requests

from di2siem_sandbox import intakes

JUMPCLOUD_KEY = "bench-jumpcloud-key"
CORALOGIX_KEY = "bench-coralogix-key"
EVENTS_PATH = "/insights/directory/v1/events"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"simulator on port {port} did not start within {timeout_s} s")


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def simulator(
    only: str, port: int, backlog: int, extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, int]]:
    """The simulator `only` (jumpcloud, coralogix or an intake's) in a process of its own, on
    `port`: its control API's URL (and pid) once that answers."""
    port_flag = f"--{only.replace('_', '-')}-port"
    command = [
        sys.executable, "-m", "di2siem_sandbox", "--only", only, port_flag, str(port),
        "--jumpcloud-key", JUMPCLOUD_KEY, "--coralogix-key", CORALOGIX_KEY,
        "--backlog", str(backlog), "--backlog-days", "80", "--rate", "0", *extra,
    ]  # fmt: skip
    if only != "jumpcloud":
        # validate and count every record, but do not hoard 200k decoded events in memory
        command.append("--sink-count-only")
    if only not in ("jumpcloud", "coralogix"):
        command += ["--intake", only]
    control = port
    if only == "syslog":  # its counters are on a control API of their own
        control = free_port()
        command += ["--syslog-control-port", str(control)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        # generating a 200k backlog takes a few seconds before the port opens
        wait_until_listening(control, process, timeout_s=300)
        yield f"http://127.0.0.1:{control}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def write_config(
    directory: Path, jumpcloud_url: str, sink_url: str, siem: dict[str, object] | None = None
) -> Path:
    """The run's config: the Coralogix sink at `sink_url`, or the `siem` section given."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "jumpcloud": {
            "api_key": JUMPCLOUD_KEY,
            "base_url": jumpcloud_url,
            "initial_days_back": -90,
            "page_size": 10000,
        },
        "siem": {
            "format": "coralogix",
            "url": f"{sink_url}/logs/v1/singles",
            "api_key": CORALOGIX_KEY,
            "application_name": "jumpcloud",
            "subsystem_name": "directory-insights",
            "batch_size": 3000,
            "batch_delay_milliseconds": 0,
        },
        "state_dir": str(directory / "state"),
        "run_time_budget_seconds": 600,
    }
    if siem is not None:
        config["siem"] = {**siem, "batch_size": 3000, "batch_delay_milliseconds": 0}
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a live process: its own peak RSS. ``wait4``'s ru_maxrss would also count the
    benchmark's memory that the child inherited at fork time."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_collector(config: Path) -> tuple[float, int]:
    """One ``di2siem run``: (wall seconds, peak RSS in KiB)."""
    executable = shutil.which("di2siem")
    if executable is None:
        raise SystemExit("di2siem is not installed: pip install -e . first")
    started = time.perf_counter()
    process = subprocess.Popen(
        [executable, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )
    peak = 0
    while process.poll() is None:
        # VmHWM only grows, so the last reading before exit is the peak (sampled every 5 ms)
        peak = max(peak, peak_rss_kib(process.pid))
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    stderr = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"di2siem run exited {process.returncode}:\n{stderr}")
    return elapsed, peak


def sink_count(sink_url: str, intake: str = "coralogix") -> int:
    stats = requests.get(f"{sink_url}/_sim/stats", timeout=10).json()
    return int(stats.get(intakes.DELIVERED[intake], 0))


# How each intake is measured: the simulator's options and the collector's settings for it.
# splunk_hec with indexer acknowledgement (what keeps di2siem's promise), asked every 50 ms.
INTAKE_ARGS = {"splunk_hec": ("--splunk-hec-ack",)}
INTAKE_SETTINGS: dict[str, dict[str, object]] = {"splunk_hec": {"ack": True}}
SIEM_EXTRA: dict[str, dict[str, object]] = {"splunk_hec": {"ack_poll_seconds": 0.05}}


@contextmanager
def intake_simulator(intake: str, tmp: Path) -> Iterator[tuple[str, int, dict[str, object] | None]]:
    """The SIEM side: (control URL, pid, the collector's siem section; None: Coralogix's)."""
    port = free_port()
    if intake == "coralogix":
        with simulator("coralogix", port, 0) as (url, pid):
            yield url, pid, None
        return
    extra = INTAKE_ARGS.get(intake, ())
    settings = dict(INTAKE_SETTINGS.get(intake, {}))
    scheme = "http"
    if intake == "syslog":
        extra, scheme = ("--tls-dir", str(tmp / "tls")), "tls"
        settings["ca_bundle"] = str(tmp / "tls" / "ca.pem")
    siem = intakes.siem_section(intake, f"{scheme}://127.0.0.1:{port}", settings)
    with simulator(intake, port, 0, extra) as (url, pid):
        yield url, pid, {**siem, **SIEM_EXTRA.get(intake, {})}


def raw_download(jumpcloud_url: str) -> tuple[float, int]:
    """Page through the whole backlog, parse each page, do nothing else: the ceiling."""
    session = requests.Session()
    headers = {"x-api-key": JUMPCLOUD_KEY, "Content-Type": "application/json"}
    query: dict[str, object] = {
        "service": ["all"],
        "start_time": "2000-01-01T00:00:00.000Z",
        "limit": 10000,
        "sort": "ASC",
    }
    total = 0
    started = time.perf_counter()
    while True:
        response = session.post(jumpcloud_url + EVENTS_PATH, json=query, headers=headers)
        response.raise_for_status()
        page = json.loads(response.content)
        total += len(page)
        if len(page) < int(response.headers["X-Limit"]):
            break
        query["search_after"] = json.loads(response.headers["X-Search_after"])
    return time.perf_counter() - started, total


def measure(backlog: int, repeats: int, intake: str = "coralogix") -> dict[str, float]:
    jumpcloud_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="di2siem-bench-") as tmp,
        simulator("jumpcloud", jumpcloud_port, backlog) as (jumpcloud_url, jumpcloud_pid),
        intake_simulator(intake, Path(tmp)) as (sink_url, sink_pid, siem),
    ):
        raw_rates: list[float] = []
        ship_rates: list[float] = []
        peaks: list[int] = []
        cpu = {"ceiling_client": 0.0, "collector": 0.0, "jumpcloud_sim": 0.0, "sink": 0.0}
        for attempt in range(repeats):
            before = own_cpu_s()
            raw_seconds, raw_events = raw_download(jumpcloud_url)
            cpu["ceiling_client"] += own_cpu_s() - before
            if raw_events != backlog:
                raise RuntimeError(f"expected {backlog} events, raw download saw {raw_events}")
            raw_rates.append(raw_events / raw_seconds)

            requests.post(f"{sink_url}/_sim/reset", timeout=10).raise_for_status()
            config = write_config(Path(tmp) / f"run{attempt}", jumpcloud_url, sink_url, siem)
            before = (children_cpu_s(), process_cpu_s(jumpcloud_pid), process_cpu_s(sink_pid))
            ship_seconds, peak_kib = run_collector(config)
            cpu["collector"] += children_cpu_s() - before[0]
            cpu["jumpcloud_sim"] += process_cpu_s(jumpcloud_pid) - before[1]
            cpu["sink"] += process_cpu_s(sink_pid) - before[2]
            shipped = sink_count(sink_url, intake)
            if shipped != backlog:
                raise RuntimeError(f"expected {backlog} events, shipped {shipped}")
            ship_rates.append(backlog / ship_seconds)
            peaks.append(peak_kib)
        empty_polls = [run_collector(config)[0] for _ in range(5)]
        if sink_count(sink_url, intake) != backlog:
            raise RuntimeError("an empty poll shipped events")
    figures: dict[str, float] = {
        "backlog": backlog,
        "ship_events_per_s": median(ship_rates),
        "raw_events_per_s": median(raw_rates),
        "peak_rss_mib": max(peaks) / 1024,
        "empty_poll_s": sorted(empty_polls)[len(empty_polls) // 2],
    }
    for name, seconds in cpu.items():
        figures[f"cpu_us_per_event_{name}"] = seconds / (backlog * repeats) * 1e6
    return figures


def import_ms(config: Path) -> float:
    """One run under ``-X importtime``: the sum of its top-level imports, in ms."""
    command = [sys.executable, "-X", "importtime", "-m", "di2siem", "run", "--config"]
    done = subprocess.run([*command, str(config)], capture_output=True, text=True, check=True)
    total = 0
    for line in done.stderr.splitlines():
        fields = line.split("|")  # "import time: self | cumulative | <indent>name"
        top_level = len(fields) == 3 and not fields[2][1:2].isspace()
        if line.startswith("import time:") and top_level and fields[1].strip().isdigit():
            total += int(fields[1])
    return total / 1000


def empty_poll(runs: int) -> int:
    """``--empty-poll``: the empty poll's wall, peak RSS and import time; 0 when it is under
    0.2 s (median) and 40 MiB (the budget of issue 19), else 1."""
    with (
        tempfile.TemporaryDirectory(prefix="di2siem-bench-") as tmp,
        # 20 events over the last 2.4 hours: the newest within the hour, so a caught-up run
        # asks JumpCloud's clock first (engine/window.py PROBE_MARGIN_MS), as one every minute does
        simulator("jumpcloud", free_port(), 20, ("--backlog-days", "0.1")) as (jc_url, _),
        simulator("coralogix", free_port(), 0) as (sink_url, _),
    ):
        config = write_config(Path(tmp), jc_url, sink_url)
        run_collector(config)  # catch up
        if sink_count(sink_url) != 20:
            raise RuntimeError("the catch-up run did not ship the backlog")
        results = [run_collector(config) for _ in range(runs)]
        if sink_count(sink_url) != 20:
            raise RuntimeError("an empty poll shipped events")
        imports = import_ms(config)
    walls = sorted(wall for wall, _ in results)
    peak_mib = max(peak for _, peak in results) / 1024
    print(
        f"empty poll x{runs}: wall min={walls[0]:.3f} median={median(walls):.3f} "
        f"max={walls[-1]:.3f} s peak_rss={peak_mib:.1f} MiB imports={imports:.0f} ms"
    )
    met = median(walls) < 0.2 and peak_mib < 40
    print(f"{'MET ' if met else 'MISS'} empty poll < 0.2 s (median) and < 40 MiB")
    return 0 if met else 1


def report(intake: str, args: argparse.Namespace) -> tuple[dict[str, float], bool]:
    """Measure one intake and print its figures against the targets: (the large backlog's
    figures, whether every target was met)."""
    small = measure(args.small_backlog, args.repeats, intake)
    large = measure(args.backlog, args.repeats, intake)
    ratio = large["ship_events_per_s"] / large["raw_events_per_s"]
    rss_growth = large["peak_rss_mib"] / small["peak_rss_mib"] - 1
    for figures in (small, large):
        print(
            f"backlog={figures['backlog']:>7} ship={figures['ship_events_per_s']:>9.0f} ev/s "
            f"raw_ceiling={figures['raw_events_per_s']:>9.0f} ev/s "
            f"peak_rss={figures['peak_rss_mib']:.1f} MiB "
            f"empty_poll={figures['empty_poll_s']:.3f} s"
        )
        print(
            "  cpu us/event: "
            f"collector={figures['cpu_us_per_event_collector']:.1f} "
            f"sink={figures['cpu_us_per_event_sink']:.1f} "
            f"jumpcloud_sim={figures['cpu_us_per_event_jumpcloud_sim']:.1f} "
            f"(ceiling client={figures['cpu_us_per_event_ceiling_client']:.1f})"
        )
    targets = {
        "ship >= 20000 ev/s": large["ship_events_per_s"] >= 20_000,
        "ship >= 50% of raw ceiling": ratio >= 0.5,
        "peak RSS flat (+-10%)": abs(rss_growth) <= 0.10,
        "empty poll < 0.3 s": large["empty_poll_s"] < 0.3,
    }
    print(f"ship/ceiling={ratio:.0%} rss_growth={rss_growth:+.1%}")
    for name, met in targets.items():
        print(f"{'MET ' if met else 'MISS'} {name}")
    return large, all(targets.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--small-backlog", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="ship/ceiling runs (median)")
    names = ("coralogix", *intakes.NAMES)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--intake", choices=names, default="coralogix")
    which.add_argument("--intakes", choices=("all",), help="every intake in turn, then a table")
    which.add_argument("--empty-poll", action="store_true", help="only the empty poll, --runs")
    parser.add_argument("--runs", type=int, default=15, help="--empty-poll: runs measured")
    args = parser.parse_args()

    if args.empty_poll:
        return empty_poll(args.runs)

    if not args.intakes:
        if args.intake != "coralogix":
            print(f"== intake {args.intake}")
        return 0 if report(args.intake, args)[1] else 1
    rows, ok = [], True
    for intake in names:
        print(f"== intake {intake}", flush=True)
        large, met = report(intake, args)
        rows.append((intake, large))
        ok = ok and met
    print(f"\n{args.backlog} events per run:")
    print("| intake | events/s | CPU µs/event: collector | simulator | collector peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for intake, large in rows:
        print(
            f"| {intake} | {large['ship_events_per_s']:.0f} | "
            f"{large['cpu_us_per_event_collector']:.1f} | {large['cpu_us_per_event_sink']:.1f} | "
            f"{large['peak_rss_mib']:.1f} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
