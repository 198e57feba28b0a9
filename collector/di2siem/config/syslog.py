"""The ``syslog`` format's options (RFC 5424 messages over TLS, RFC 5425, or plain TCP on
loopback): the framing, an optional client certificate, and the header fields every message
carries. The receiver is ``siem.url`` (``tls://host:6514``), verified against
``siem.ca_bundle``."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError, shown
from .checks import is_loopback_host
from .intake_options import IntakeOptions
from .schema import Field, Kind, Section

TLS_PORT = 6514  # RFC 5425
FRAMINGS = ("octet_counting", "lf")
# RFC 5424 §6.2.1 facility codes
FACILITIES = {
    name: code
    for code, name in enumerate(
        (
            "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
            "authpriv", "ftp", "ntp", "audit", "alert", "clock",
            "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
        )
    )
}  # fmt: skip
# RFC 5424 §6: header fields are PRINTUSASCII (33..126), at most this long
MAX_APP_NAME = 48
MAX_HOSTNAME = 255


@dataclass(frozen=True)
class SyslogOptions:
    framing: str
    client_cert: str | None
    client_key: str | None
    app_name: str
    hostname: str
    facility: int


def printable_ascii(value: str) -> bool:
    return bool(value) and all(33 <= ord(c) <= 126 for c in value)


def local_hostname() -> str:
    """This machine's name as a HOSTNAME field, "-" (none) when it cannot be one."""
    name = socket.gethostname()
    return name if printable_ascii(name) and len(name) <= MAX_HOSTNAME else "-"


def check_stream_url(url: str, path: str) -> str:
    """``tls://host[:port]`` anywhere (port 6514 unless given); ``tcp://host:port`` only for
    loopback hosts. Nothing else: no path, query or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise ConfigError(path, f"not a valid URL (got {shown(url)})") from None
    if parts.scheme not in ("tls", "tcp") or not host:
        raise ConfigError(
            path, f"must be a tls://host:port URL for syslog (got {shown(url)})", f"fix {path}"
        )
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ConfigError(path, "must be tls://host:port only (no path, query or credentials)")
    if parts.scheme == "tcp":
        if not is_loopback_host(host):
            raise ConfigError(
                path,
                f"plain tcp:// is only allowed for loopback hosts (got host {host})",
                f"use tls:// in {path}",
            )
        if port is None:
            raise ConfigError(path, "tcp:// needs a port", f"add the port to {path}")
    return url


def _file(section: Section, values: dict, key: str) -> str | None:
    value = section.read(values, key)
    if not value:
        return None
    if not os.path.isfile(value):
        raise ConfigError(
            section.prefix + key,
            f"file not found: {value}",
            "point it at a PEM file or remove the key",
        )
    return value


def _header_field(section: Section, values: dict, key: str, limit: int) -> str:
    value = section.read(values, key)
    if not printable_ascii(value) or len(value) > limit:
        raise ConfigError(
            section.prefix + key,
            f"must be 1..{limit} printable ASCII characters without spaces (got {shown(value)})",
        )
    return value


def _parse(section: Section, values: dict) -> SyslogOptions:
    cert = _file(section, values, "client_cert")
    key = _file(section, values, "client_key")
    if key and not cert:
        raise ConfigError(
            section.prefix + "client_key",
            "set without siem.client_cert",
            "set siem.client_cert to the certificate of that key",
        )
    hostname = values.get("hostname")
    return SyslogOptions(
        framing=section.read(values, "framing"),
        client_cert=cert,
        client_key=key,
        app_name=_header_field(section, values, "app_name", MAX_APP_NAME),
        hostname=(
            _header_field(section, values, "hostname", MAX_HOSTNAME)
            if hostname
            else local_hostname()
        ),
        facility=FACILITIES[section.read(values, "facility")],
    )


SYSLOG = IntakeOptions(
    "syslog",
    (
        Field(
            "framing",
            Kind.CHOICE,
            "octet_counting",
            choices=FRAMINGS,
            fold="lower",
            blank_is_default=True,
            help=(
                "`syslog`: `octet_counting` (`LEN SP MSG`, RFC 5425/6587) or `lf` (each message "
                "ended by a line feed, for receivers that only take that)."
            ),
        ),
        Field(
            "client_cert",
            Kind.TEXT,
            help=(
                "`syslog`: a PEM client certificate (and its key, unless `client_key` is given) "
                "for receivers that require one."
            ),
            shown_default="none",
        ),
        Field(
            "client_key",
            Kind.TEXT,
            help="`syslog`: the PEM private key of `client_cert` (unencrypted; keep it 0600).",
            shown_default="none",
        ),
        Field(
            "app_name",
            Kind.TEXT,
            "jumpcloud",
            blank_is_default=True,
            help="`syslog`: the APP-NAME of every message (1..48 printable ASCII).",
        ),
        Field(
            "hostname",
            Kind.TEXT,
            help="`syslog`: the HOSTNAME of every message (1..255 printable ASCII).",
            shown_default="this machine's host name",
        ),
        Field(
            "facility",
            Kind.CHOICE,
            "local0",
            choices=tuple(FACILITIES),
            choices_text="a syslog facility name (kern, user, ..., auth, authpriv, local0..local7)",
            fold="lower",
            blank_is_default=True,
            help=(
                "`syslog`: the facility of every message's PRI (`user`, `auth`, `authpriv`, "
                "`local0`..`local7`, ...); the severity is each event's own."
            ),
        ),
    ),
    _parse,
    "`syslog` (RFC 5424 messages over TLS to `url`, e.g. `tls://siem.example.com:6514`)",
    check_url=check_stream_url,
)
