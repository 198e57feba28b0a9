"""Rules for values that travel: URLs (https; plain http on loopback only), HTTP header
values and names, and the length floor of a secret that is redacted from every log line."""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from ..errors import ConfigError, shown

# A configured secret is redacted from every log line wherever it appears: one this short
# would also rewrite ordinary text (a 1, a quote, "info"). No real API key is this short.
SECRET_MIN_CHARS = 8

# RFC 9110 token characters (header names)
TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_secret_length(value: str, path: str) -> None:
    """Refuse a secret too short to be redacted safely (named by its key, never shown)."""
    if len(value) < SECRET_MIN_CHARS:
        raise ConfigError(
            path,
            f"shorter than {SECRET_MIN_CHARS} characters, too short for a real key (secrets "
            "are redacted from every log line, and one this short would rewrite ordinary text)",
            f"set {path} to the full key",
        )


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot travel as an HTTP header value (None: it can). Strict on
    purpose: printable ASCII with no surrounding spaces, which every real key is."""
    for position, char in enumerate(value, 1):
        if char in "\r\n":
            return f"contains a line break (character {position})"
    if value != value.strip(" \t"):
        return "starts or ends with whitespace (a space or a tab)"
    for position, char in enumerate(value, 1):
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            return f"contains a control character such as a tab (character {position})"
        if code > 0x7E:
            return f"contains a non-ASCII character (character {position})"
    return None


def check_header_value(value: str, path: str) -> None:
    """ConfigError for a value HTTP cannot carry; the value itself is never echoed."""
    problem = header_value_problem(value)
    if problem:
        raise ConfigError(
            path,
            f"{problem}, which an HTTP header cannot carry",
            f"set {path} to the exact value (printable ASCII, nothing around it)",
        )


def is_loopback_host(host: str | None) -> bool:
    """Literal 127.0.0.0/8, ::1 and ``localhost`` only: ``x.localhost`` is resolved through
    DNS like any other name, so it gets no plain-http or no-proxy exemption."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, path: str) -> str:
    """https anywhere; plain http only for loopback hosts."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(path, f"not a valid URL (got {shown(url)})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(path, f"must be an https:// URL (got {shown(url)})", f"fix {path}")
    if parts.username or parts.password:
        raise ConfigError(path, "must not carry credentials in the URL", "use the api_key keys")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            path,
            f"plain http:// is only allowed for loopback hosts (got host {host})",
            f"use https:// in {path}",
        )
    return url


def check_ca_bundle(value: str | None, path: str) -> str | None:
    """A PEM CA bundle file that exists ("" or None: the default trust store)."""
    if value is None or value == "":
        return None
    if not os.path.isfile(value):
        raise ConfigError(
            path,
            f"CA bundle file not found: {value}",
            "point it at a PEM CA bundle file or remove the key",
        )
    return value
