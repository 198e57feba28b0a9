"""Syslog: one RFC 5424 message per event over TLS (RFC 5425) or, on loopback, plain TCP.

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG``: PRI from ``siem.facility`` and the
event's own severity (severity.py), TIMESTAMP the event time (UTC, milliseconds), MSGID its
event type (printable US-ASCII, cut to 32), no structured data, MSG the event in di2siem's
usual shape (compact JSON, UTF-8, no BOM). Framed by octet counting (``LEN SP MSG``) or ended
by a line feed. Syslog has no answer: a batch counts as delivered once the receiver's TCP
stack acknowledged every byte of it while the connection stayed up (stream.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..batching import Framing
from ..config import SiemConfig
from ..config.syslog import TLS_PORT
from ..timeutil import format_ms
from .base import Intake, Transport
from .severity import auto_severity
from .stream import StreamTransport

INFO = 3
# the event's 1..6 -> RFC 5424 severity (0 emergency .. 7 debug)
SYSLOG_SEVERITY = {6: 2, 5: 3, 4: 4, 3: 6, 2: 7, 1: 7}
MAX_MSGID = 32
NIL = "-"
MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
OCTET_COUNTED = Framing(b"", b"", b"")  # every record carries its own length
LF_ENDED = Framing(b"", b"\n", b"\n")


def msgid(event_type: object) -> str:
    """The event type as an RFC 5424 MSGID: printable US-ASCII only, at most 32 characters."""
    if type(event_type) is not str:
        return NIL
    kept = "".join(c for c in event_type if 33 <= ord(c) <= 126)[:MAX_MSGID]
    return kept or NIL


def timestamp(ts_ms: int | None) -> str:
    if ts_ms is None or not 0 <= ts_ms <= MAX_TIMESTAMP_MS:
        return NIL
    return format_ms(ts_ms)


class Rfc5424Envelope:
    def __init__(self, facility: int, hostname: str, app_name: str, octet_counted: bool) -> None:
        self.facility8 = facility * 8
        self.fields = f"{hostname} {app_name} {NIL}"  # HOSTNAME APP-NAME PROCID
        self.octet_counted = octet_counted

    def head(self, event: dict, key: str | None = None) -> tuple[int, str]:
        """PRI and MSGID, from the event as received."""
        pri = self.facility8 + SYSLOG_SEVERITY[auto_severity(event, INFO)]
        return pri, msgid(event.get("event_type"))

    def wrap(self, text: str, ts_ms: int | None, head: tuple[int, str]) -> str:
        pri, message_id = head
        message = f"<{pri}>1 {timestamp(ts_ms)} {self.fields} {message_id} {NIL} {text}"
        if not self.octet_counted:
            return message
        size = len(message) if message.isascii() else len(message.encode("utf-8"))
        return f"{size} {message}"


class Syslog(Intake):
    name = "syslog"
    options = ("url", "framing", "client_cert", "client_key", "app_name", "hostname", "facility")

    def __init__(self, cfg: SiemConfig) -> None:
        super().__init__(cfg)
        opts = cfg.options
        octet_counted = opts.framing == "octet_counting"
        self.framing = OCTET_COUNTED if octet_counted else LF_ENDED
        self.envelope = Rfc5424Envelope(opts.facility, opts.hostname, opts.app_name, octet_counted)

    def headers(self) -> dict[str, str]:
        return {}

    def transport(self) -> Transport:
        cfg, opts = self.cfg, self.cfg.options
        parts = urlsplit(cfg.url)
        return StreamTransport(
            host=parts.hostname or "",
            port=parts.port or TLS_PORT,
            tls=parts.scheme == "tls",
            ca_bundle=cfg.ca_bundle,
            client_cert=opts.client_cert,
            client_key=opts.client_key,
            timeout=cfg.timeout_seconds,
        )
