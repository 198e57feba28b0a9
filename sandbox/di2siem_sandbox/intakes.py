"""The SIEM intakes `di2siem sandbox --intake NAME` runs beside the JumpCloud simulator, instead
of the Coralogix sink (the default, in __init__.py): each one's options (its port and its
credentials, sandbox defaults), how its simulator starts, and the collector's `siem` section
that points at it. `siem_section` and `DELIVERED` are what the benchmark and the demo use.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .elasticsearch import ElasticsearchSim
from .otlp import LOGS_PATH, OtlpReceiver
from .plumbing.base import BaseSimulator
from .plumbing.wire import Request, Response
from .sentinel import CLIENT_ID, DCR_ID, TENANT, SentinelSimulator
from .splunk_hec import SplunkHecSimulator
from .syslog import SyslogReceiver
from .tlsfiles import make_tls_files

# The sandbox's well-known credentials (like sandbox-coralogix-key): test peers only.
SPLUNK_HEC_TOKEN = "5a4d3c2b-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
ELASTICSEARCH_API_KEY = base64.b64encode(b"sandbox-key-id:sandbox-elasticsearch-key").decode()
SENTINEL_CLIENT_SECRET = "sandbox-sentinel-secret"
OTLP_TOKEN = "sandbox-otlp-token"

PORTS = {
    "splunk_hec": 8402,
    "elasticsearch": 8403,
    "sentinel": 8404,
    "otlp": 8405,
    "syslog": 8406,  # TLS; its control API (GET /_sim/stats) on 8407
}
SYSLOG_CONTROL_PORT = 8407
NAMES = tuple(PORTS)
# The /_sim/stats counter of the events each simulator accepted (Coralogix: accepted_records).
DELIVERED = {
    "coralogix": "accepted_records",
    "splunk_hec": "indexed_events",
    "elasticsearch": "items_created",
    "sentinel": "accepted_rows",
    "otlp": "accepted_records",
    "syslog": "accepted_records",
}


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("with --intake (sandbox credentials by default)")
    for name, port in PORTS.items():
        flag = name.replace("_", "-")
        group.add_argument(f"--{flag}-port", type=int, default=port, help="0 picks a free port")
    group.add_argument("--splunk-hec-token", default=SPLUNK_HEC_TOKEN, help="the HEC token")
    group.add_argument(
        "--splunk-hec-ack",
        action="store_true",
        help="the token has indexer acknowledgement (and the config ack: true)",
    )
    group.add_argument(
        "--elasticsearch-api-key", default=ELASTICSEARCH_API_KEY, help="the API key (ApiKey)"
    )
    group.add_argument(
        "--sentinel-client-secret", default=SENTINEL_CLIENT_SECRET, help="the app's secret"
    )
    group.add_argument("--otlp-token", default=OTLP_TOKEN, help="sent as Authorization: Bearer")
    group.add_argument(
        "--syslog-control-port",
        type=int,
        default=SYSLOG_CONTROL_PORT,
        help="syslog: the HTTP control API (/_sim/...); 0 picks a free port",
    )
    group.add_argument(
        "--syslog-framing",
        choices=("octet_counting", "lf"),
        default="octet_counting",
        help="syslog: how messages are delimited on the TLS stream",
    )
    group.add_argument(
        "--tls-dir",
        type=Path,
        help="syslog: make the throwaway CA and server certificate here (default: a temporary "
        "folder, removed at exit); the config's ca_bundle is its ca.pem",
    )


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen intake's settings from the command line (what its siem section needs)."""
    return {
        "splunk_hec": {"token": args.splunk_hec_token, "ack": args.splunk_hec_ack},
        "elasticsearch": {"api_key": args.elasticsearch_api_key},
        "sentinel": {"client_secret": args.sentinel_client_secret},
        "otlp": {"token": args.otlp_token},
        "syslog": {"framing": args.syslog_framing},
    }[args.intake]


def siem_section(name: str, url: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The collector's `siem` section for intake `name`'s simulator at `url` (its ready-line
    URL); `given`: settings() of the command line, or the sandbox defaults."""
    s = given or {}
    if name == "splunk_hec":
        section = {"format": name, "url": url, "token": s.get("token", SPLUNK_HEC_TOKEN)}
        return {**section, "ack": bool(s.get("ack", False))}
    if name == "elasticsearch":
        return {"format": name, "url": url, "api_key": s.get("api_key", ELASTICSEARCH_API_KEY)}
    if name == "sentinel":
        return {
            "format": name,
            "endpoint": url,
            "authority": url,  # its Entra token endpoint is the same loopback server
            "dcr_immutable_id": DCR_ID,
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": s.get("client_secret", SENTINEL_CLIENT_SECRET),
        }
    if name == "otlp":
        headers = {"Authorization": "Bearer " + s.get("token", OTLP_TOKEN)}
        return {"format": name, "url": url + LOGS_PATH, "headers": headers}
    if name == "syslog":
        section = {"format": name, "url": url, "framing": s.get("framing", "octet_counting")}
        return {**section, **({"ca_bundle": s["ca_bundle"]} if s.get("ca_bundle") else {})}
    raise ValueError(f"unknown intake {name!r} (one of {', '.join(NAMES)})")


class SyslogControl(BaseSimulator):
    """The syslog receiver's control API (syslog itself has none): GET /_sim/stats (its
    counters, accepted_records the messages received), POST /_sim/reset."""

    name = "syslog-control"

    def __init__(self, host: str, port: int, receiver: SyslogReceiver) -> None:
        super().__init__(host, port)
        self.receiver = receiver

    def handle_api(self, request: Request) -> Response:
        return Response.message(404, f"syslog itself listens on {self.receiver.url}")

    @property
    def stats(self) -> dict[str, Any]:
        data = super().stats
        rx = self.receiver
        with rx.lock:
            data.update(
                accepted_records=rx.accepted,
                errors=list(rx.errors[-20:]),
                connections=rx.connections,
                tls_handshakes=rx.handshakes,
                bytes_read=rx.bytes_read,
            )
        return data

    def reset(self) -> None:
        super().reset()
        self.receiver.reset()


@dataclass
class Serving:
    """A started intake simulator: its URLs (ready line), its settings (siem_section), and
    what stop() ends."""

    urls: dict[str, str]
    settings: dict[str, Any]
    servers: list[Any] = field(default_factory=list)
    scratch: str | None = None  # a temporary TLS folder, removed at stop

    @property
    def url(self) -> str:
        return next(iter(self.urls.values()))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def serve(args: argparse.Namespace, keep_records: bool, out_path: Path | None) -> Serving:
    """Start the simulator of `args.intake` on `args.host`; the caller stops it."""
    name, host = args.intake, args.host
    port = getattr(args, f"{name}_port")
    chosen = settings(args)
    if name == "syslog":
        return _serve_syslog(args, chosen, keep_records, out_path)
    sim: BaseSimulator
    if name == "splunk_hec":
        sim = SplunkHecSimulator(host, port, token=chosen["token"], ack=chosen["ack"])
    elif name == "elasticsearch":
        sim = ElasticsearchSim(host, port, api_key=chosen["api_key"])
    elif name == "sentinel":
        sim = SentinelSimulator(host, port, client_secret=chosen["client_secret"])
    else:
        sim = OtlpReceiver(host, port, headers=siem_section(name, "", chosen)["headers"])
    sim.keep_records, sim.out_path = keep_records, out_path
    sim.start()
    return Serving({name: sim.url}, chosen, [sim])


def _serve_syslog(
    args: argparse.Namespace, chosen: dict[str, Any], keep_records: bool, out_path: Path | None
) -> Serving:
    scratch = None if args.tls_dir else tempfile.mkdtemp(prefix="di2siem-sandbox-tls-")
    serving = Serving({}, dict(chosen), [], scratch)
    try:
        tls = make_tls_files(Path(args.tls_dir or scratch))
        serving.settings["ca_bundle"] = tls.ca
        receiver = SyslogReceiver(
            framing=chosen["framing"],
            certfile=tls.server_cert,
            keyfile=tls.server_key,
            host=args.host,
            port=args.syslog_port,
        )
        receiver.keep_records, receiver.out_path = keep_records, out_path
        serving.servers.append(receiver.start())
        serving.urls["syslog"] = receiver.url
        control = SyslogControl(args.host, args.syslog_control_port, receiver)
        serving.servers.append(control.start())
        serving.urls["syslog-control"] = control.url
    except BaseException:
        serving.stop()
        raise
    return serving
