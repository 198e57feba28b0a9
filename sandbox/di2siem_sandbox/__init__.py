"""Simulators for JumpCloud Directory Insights and the SIEM intakes, and `di2siem sandbox`.

The distribution di2siem-sandbox, apart from the collector's: test and demo peers only, never
installed with the product. Importable for tests (`JumpCloudSimulator`, `CoralogixSink`) and
runnable as `di2siem-sandbox [options]`, `python -m di2siem_sandbox [options]`, or
`di2siem sandbox [options]` where the collector is installed too. `--intake NAME` runs that
intake's simulator (intakes.py: splunk_hec, elasticsearch, sentinel, otlp, syslog) instead of
the Coralogix sink, and prints the collector config for both after the ready line.

Control API (no auth, loopback only), on both simulators unless noted:
  GET  /_sim/stats      counters: requests, by_path {path: {status: n}}, by_status, ...
  POST /_sim/faults     {"status": 429, "count": 2, "retry_after": 1, "path": ..., "body": ...,
                        "delay_s": ...} or an array of those; GET /_sim/faults lists pending ones
  POST /_sim/reset      drop events/records, faults and counters
  POST /_sim/events     JumpCloud: [events] | {"events": [...], "org", "visible_after_s"} |
                        {"generate": N, "days"|"start"/"end", "seed", "org", "services",
                        "deep_every", "visible_after_s"} | {"burst": N, "at", "org"}
  GET  /_sim/received   sink: [{"endpoint", "record"}]; ?offset=N&endpoint=singles&events=1
  POST /_sim/insights   JumpCloud: {"org": "<id>", "enabled": false} answers 402 ("Directory
                        Insights is not enabled for your organization") for that org; true undoes
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from . import intakes
from .coralogix import DATASTREAM_PATH, SINGLES_PATH, CoralogixSink
from .coralogix import DEFAULT_API_KEY as DEFAULT_CORALOGIX_KEY
from .events import DAY_MS, DEFAULT_ORG_ID, burst_events, deep_event, generate_events, now_ms
from .jumpcloud import JumpCloudSimulator
from .jumpcloud.auth import DEFAULT_API_KEY as DEFAULT_JUMPCLOUD_KEY
from .jumpcloud.auth import TOKEN_PATH

__all__ = [
    "DEFAULT_CORALOGIX_KEY",
    "DEFAULT_JUMPCLOUD_KEY",
    "DEFAULT_ORG_ID",
    "CoralogixSink",
    "JumpCloudSimulator",
    "build_config",
    "burst_events",
    "deep_event",
    "generate_events",
    "main",
]

LOG = logging.getLogger("di2siem_sandbox")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, unless there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An unknown option is named with the closest known one (``--backlg``: ``--backlog``)."""

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            for word in message[len(prefix) :].split():
                name = word.split("=", 1)[0]
                if name.startswith("--"):
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    message = f"unknown option {name}{hint}"
                    break
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="di2siem sandbox",
        description="Run the JumpCloud DI simulator and the Coralogix sink on loopback.",
        epilog="It runs until stopped: stop it with Ctrl-C (or SIGTERM).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument("--jumpcloud-port", type=int, default=8400, help="0 picks a free port")
    p.add_argument("--coralogix-port", type=int, default=8401, help="0 picks a free port")
    p.add_argument(
        "--jumpcloud-key", default=DEFAULT_JUMPCLOUD_KEY, help="the admin API key it accepts"
    )
    p.add_argument(
        "--coralogix-key", default=DEFAULT_CORALOGIX_KEY, help="the Send-Your-Data key it accepts"
    )
    p.add_argument("--client-id", help="also accept this service account at /oauth2/token")
    p.add_argument("--client-secret", help="the service account's secret (with --client-id)")
    p.add_argument("--token-ttl-s", type=float, default=3600.0, help="service account tokens")
    p.add_argument(
        "--org-id",
        action="append",
        default=[],
        help=f"MSP organisation, 24 hex digits (repeatable; none: one org, {DEFAULT_ORG_ID})",
    )
    p.add_argument(
        "--provider-id", help="MSP provider: serve its portal events under x-provider-id"
    )
    p.add_argument(
        "--no-insights",
        action="append",
        default=[],
        metavar="ORG_ID",
        help="answer 402 (Directory Insights not enabled) for this org (repeatable)",
    )
    p.add_argument("--backlog", type=int, default=2000, help="events per org at start")
    p.add_argument(
        "--backlog-days",
        type=float,
        default=3.0,
        help="backlog spread over the last N days (the oldest hour of it left empty)",
    )
    p.add_argument("--rate", type=float, default=0.5, help="new events per second (0: none)")
    p.add_argument("--late-fraction", type=float, default=0.0, help="share of late new events")
    p.add_argument("--late-delay-s", type=float, default=120.0, help="indexing delay of those")
    p.add_argument("--burst", type=int, default=0, help="events sharing one millisecond")
    p.add_argument("--sink-out", type=Path, help="append accepted records to this JSONL file")
    p.add_argument(
        "--sink-count-only",
        action="store_true",
        help="sink: validate and count accepted records but keep none (/_sim/received empty)",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=2 * 1024 * 1024, help="sink: larger bodies get 413"
    )
    p.add_argument("--seed", type=int, default=0, help="of the generated events")
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="JumpCloud: every API answer waits this long (a real API's round trip ~200)",
    )
    p.add_argument("--write-config", type=Path, help="write a collector config JSON here")
    p.add_argument(
        "--siem-format",
        choices=("json_lines", "coralogix"),
        default="json_lines",
        help="the config's format for the Coralogix sink",
    )
    p.add_argument(
        "--intake",
        choices=("coralogix", *intakes.NAMES),
        default="coralogix",
        help="the SIEM simulator beside JumpCloud (--sink-out and --sink-count-only apply to it)",
    )
    p.add_argument(
        "--only",
        choices=("jumpcloud", "coralogix", *intakes.NAMES),
        help="run one simulator: jumpcloud, or the --intake's",
    )
    intakes.add_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate(args: argparse.Namespace) -> str | None:
    if not _is_loopback(args.host) and not args.allow_remote:
        return (
            f"refusing --host {args.host}: the sandbox uses well-known keys and plain HTTP, "
            "so anyone who can reach it could read or inject events; bind to loopback, or "
            "pass --allow-remote on an isolated network"
        )
    for org in args.org_id:
        if not re.fullmatch(r"[0-9a-f]{24}", org):
            return f"--org-id {org}: not a JumpCloud organization id (24 hex digits 0-9 a-f)"
    unknown = set(args.no_insights) - set(args.org_id or [DEFAULT_ORG_ID])
    if unknown:
        return f"--no-insights {sorted(unknown)[0]}: not an org served here (add --org-id)"
    if bool(args.client_id) != bool(args.client_secret):
        return "--client-id and --client-secret go together"
    if args.only not in (None, "jumpcloud", args.intake):
        return f"--only {args.only}: runs jumpcloud or the --intake ({args.intake})"
    if args.token_ttl_s <= 0:
        return "--token-ttl-s must be positive"
    if not 0 <= args.late_fraction <= 1:
        return "--late-fraction must be between 0 and 1"
    for name in ("backlog", "burst", "rate", "backlog_days", "late_delay_s"):
        if getattr(args, name) < 0:
            return f"--{name.replace('_', '-')} must not be negative"
    return None


def build_config(
    jumpcloud_url: str,
    siem_url: str,
    jumpcloud_key: str = DEFAULT_JUMPCLOUD_KEY,
    coralogix_key: str = DEFAULT_CORALOGIX_KEY,
    org_ids: list[str] | None = None,
    siem_format: str = "json_lines",
    state_dir: str | None = None,
    initial_days_back: int = -1,
    siem_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A collector configuration pointing at the simulators (legacy shape by default).

    `siem_format`: json_lines or coralogix for the Coralogix sink at `siem_url`, or an intake
    of intakes.py for its simulator there (`siem_settings`: its credentials, else the
    sandbox's)."""
    config: dict[str, Any] = {
        "jumpcloud": {
            "api_key": jumpcloud_key,
            "base_url": jumpcloud_url,
            "services": ["all"],
            "org_ids": list(org_ids or []),
            "initial_days_back": initial_days_back,
        },
    }
    if siem_format in intakes.NAMES:
        config["siem"] = intakes.siem_section(siem_format, siem_url, siem_settings)
    elif siem_format == "coralogix":
        config["siem"] = {
            "format": "coralogix",
            "url": siem_url + SINGLES_PATH,
            "api_key": coralogix_key,
            "application_name": "jumpcloud",
            "subsystem_name": "directory-insights",
            "severity": 3,
        }
    else:
        config["siem"] = {
            "format": "json_lines",
            "url": siem_url + DATASTREAM_PATH,
            "method": "POST",
            "headers": {"private_key": coralogix_key},
            "content_type": "application/json",
            "batch_size": 1000,
            "batch_delay_milliseconds": 0,
            "timestamp_field_name": "jc_timestamp",
            "custom_log_fields": {
                "reqHost": "jumpcloud",
                "customField": "directory-insights",
                "severity": "info",
            },
        }
    if state_dir is not None:
        config["state_dir"] = state_dir
    return config


def _config(
    args: argparse.Namespace,
    jc_url: str,
    siem_url: str,
    siem_settings: dict[str, Any] | None,
    state_dir: str | None,
) -> dict[str, Any]:
    config = build_config(
        jc_url,
        siem_url,
        args.jumpcloud_key,
        args.coralogix_key,
        args.org_id,
        args.siem_format if args.intake == "coralogix" else args.intake,
        state_dir,
        # One day more than the backlog, so the first run sees all of it.
        -(math.ceil(args.backlog_days) + 1),
        siem_settings,
    )
    if args.provider_id:
        config["jumpcloud"]["provider_id"] = args.provider_id
    if args.client_id:  # service account mode: client credentials instead of the key
        jumpcloud = config["jumpcloud"]
        del jumpcloud["api_key"]
        jumpcloud["client_id"] = args.client_id
        jumpcloud["client_secret"] = args.client_secret
        jumpcloud["token_url"] = jc_url + TOKEN_PATH
        jumpcloud["org_ids"] = list(args.org_id or [DEFAULT_ORG_ID])
    return config


def _write_config(args: argparse.Namespace, config: dict[str, Any]) -> None:
    path: Path = args.write_config
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(config, out, indent=2)
        out.write("\n")


def _seed_jumpcloud(sim: JumpCloudSimulator, args: argparse.Namespace) -> None:
    end = now_ms()
    span = int(args.backlog_days * DAY_MS)
    # The oldest events stay a little inside the window, so a collector whose first run
    # starts `now - backlog_days` (a few minutes later) still sees the whole backlog.
    margin = min(3_600_000, span // 10)
    if args.backlog:
        sim.generate(args.backlog, end - span + margin, end)
        if sim.provider_store:
            sim.generate(
                max(1, args.backlog // 10), end - span + margin, end, org=sim.provider_store
            )
    if args.burst:
        for org in sim.org_ids:
            sim.add_burst(args.burst, end - 60_000, org)


def _url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"


def _install_signals(stop: threading.Event) -> None:
    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    try:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    except ValueError:
        pass  # not the main thread (embedded use): the caller stops us another way


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    """Start the simulators, print their URLs, serve until `stop` is set."""
    sims: list[Any] = []
    ready: list[str] = []  # name=url of each simulator started
    jc_url = _url(args.host, args.jumpcloud_port)
    cx_url = _url(args.host, args.coralogix_port)
    other = args.intake != "coralogix"
    if other:  # where the intake's simulator would be (with --only jumpcloud)
        port = getattr(args, f"{args.intake}_port")
        siem_url = _url(args.host, port, "tls" if args.intake == "syslog" else "http")
        siem_settings: dict[str, Any] | None = intakes.settings(args)
    else:
        siem_url, siem_settings = cx_url, None
    try:
        if args.only in (None, "jumpcloud"):
            jc = JumpCloudSimulator(
                args.host,
                args.jumpcloud_port,
                args.jumpcloud_key,
                args.org_id or None,
                late_fraction=args.late_fraction,
                late_delay_s=args.late_delay_s,
                seed=args.seed,
                service_accounts={args.client_id: args.client_secret} if args.client_id else None,
                token_ttl_s=args.token_ttl_s,
                provider_id=args.provider_id,
                insights_disabled=args.no_insights,
                latency_s=args.latency_ms / 1000,
            )
            _seed_jumpcloud(jc, args)
            sims.append(jc.start())
            jc_url = jc.url
            ready.append(f"{jc.name}={jc.url}")
            if args.rate > 0:
                jc.start_live(args.rate, args.late_fraction, args.late_delay_s)
        if other and args.only in (None, args.intake):
            serving = intakes.serve(args, not args.sink_count_only, args.sink_out)
            sims.append(serving)
            siem_url, siem_settings = serving.url, serving.settings
            ready += [f"{name}={url}" for name, url in serving.urls.items()]
        elif not other and args.only in (None, "coralogix"):
            cx = CoralogixSink(
                args.host,
                args.coralogix_port,
                args.coralogix_key,
                max_body_bytes=args.max_body_bytes,
                freeze_gc=True,
                out_path=args.sink_out,
                keep_records=not args.sink_count_only,
            )
            sims.append(cx.start())
            siem_url = cx.url
            ready.append(f"{cx.name}={cx.url}")
        if args.write_config:
            state_dir = str(args.write_config.resolve().parent / "di2siem-state")
            _write_config(args, _config(args, jc_url, siem_url, siem_settings, state_dir))
        print("di2siem sandbox ready: " + " ".join(ready), flush=True)
        if other:
            print("collector config for them (save it, then di2siem run --config FILE):")
            print(json.dumps(_config(args, jc_url, siem_url, siem_settings, None), indent=2))
            sys.stdout.flush()
        stop.wait()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"di2siem sandbox: cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        for sim in sims:
            sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `di2siem sandbox ARGS`; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    problem = _validate(args)
    if problem:
        print(f"di2siem sandbox: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    LOG.setLevel(logging.INFO if args.verbose else logging.WARNING)
    stop = threading.Event()
    _install_signals(stop)
    return run(args, stop)
