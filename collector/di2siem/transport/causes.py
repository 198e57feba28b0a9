"""A transport failure said as its cause, in words a person reads: "connection refused",
"name does not resolve", "TLS certificate verify failed: self-signed certificate"; never the
library's wrapping ("HTTPConnectionPool(...): Max retries exceeded ...", "<... object at
0x...>"), whose retry count is not ours and whose text cut the cause off. Endpoints are named
by host and port alone: a URL's path, query and userinfo may hold secrets.
"""

from __future__ import annotations

import errno
import http.client
import re
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "tcp": 514, "tls": 6514}

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "the peer closed the connection (broken pipe)",
    errno.EHOSTUNREACH: "host unreachable (no route to it)",
    errno.ENETUNREACH: "network unreachable (no route to it)",
    errno.EHOSTDOWN: "host is down",
    errno.ENETDOWN: "network is down",
    errno.EADDRNOTAVAIL: "no local address to connect from",
    errno.ETIMEDOUT: "timed out (the host did not answer)",
}
# Failures to connect that no longer wait for the host can only repeat themselves: nothing
# was sent. A connect that timed out is not among them (a congested path may clear).
_NOT_CONNECTED = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
    errno.EADDRNOTAVAIL,
}
_LIBRARY_NOISE = (
    re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*"),  # <urllib3....Connection object at>
    re.compile(r"\b\w*(?:Pool|Connection)\(host=[^)]*\):?\s*"),  # HTTPConnectionPool(host=...)
    re.compile(r"Max retries exceeded with url: \S*\s*"),  # urllib3's retries, with the path
    re.compile(r"\[Errno -?\d+\]\s*"),
    re.compile(r"\s*\(_ssl\.c:\d+\)"),
)


def endpoint(url: str) -> str:
    """``host:port`` of a URL (the scheme's port when none is given), nothing else of it."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(an invalid URL)"
    port = port or DEFAULT_PORTS.get(parts.scheme.lower())
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps, outermost first: the explicit cause, urllib3's ``reason``
    (MaxRetryError, ProxyError), an exception among ``args`` (requests' ConnectionError,
    urllib3's ProtocolError), else the implicit context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = _wrapped(current)


def _wrapped(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return arg
    return None if exc.__suppress_context__ else exc.__context__


def describe(exc: BaseException) -> str:
    """The cause of a transport failure in plain words (the innermost one that says more than
    its wrappers), or the library's message cleaned of class names and addresses."""
    links = list(chain(exc))
    for link in reversed(links):
        words = _words(link)
        if words:
            return words
    for link in reversed(links):
        text = clean(str(link))
        if text:
            return text
    return "failed"


def not_connected(exc: BaseException) -> bool:
    """No connection was made and trying again at once would fail the same way (refused, a
    name that does not resolve, no route): nothing was sent. Timeouts are not this."""
    for link in chain(exc):
        if isinstance(link, TimeoutError):
            return False
        if isinstance(link, socket.gaierror):
            return True
        if isinstance(link, OSError) and link.errno in _NOT_CONNECTED:
            return True
    return False


def _words(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or _ssl_reason(exc)
        return f"TLS certificate verify failed: {reason}"
    if isinstance(exc, ssl.SSLEOFError):
        return "the peer closed the connection during the TLS handshake"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {_ssl_reason(exc)}"
    if isinstance(exc, socket.gaierror):
        return _resolution(exc)
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the peer closed the connection without answering"
    if isinstance(exc, http.client.IncompleteRead) or type(exc).__name__ == "IncompleteRead":
        return "the peer closed the connection before the answer was complete"
    if isinstance(exc, OSError) and exc.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[exc.errno]
    if isinstance(exc, TimeoutError):
        return "timed out"
    return ""


def _resolution(exc: socket.gaierror) -> str:
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return "name does not resolve"
    if exc.errno == socket.EAI_AGAIN:
        return "name does not resolve (no answer from the DNS server: a temporary failure)"
    return f"name does not resolve ({clean(exc.strerror or str(exc)).lower()})"


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason ("WRONG_VERSION_NUMBER") as words ("wrong version number")."""
    if exc.reason:
        return exc.reason.replace("_", " ").lower()
    return clean(str(exc))


def clean(text: str, limit: int = 200) -> str:
    """A library's message without class names, object addresses, errno tags or urllib3's
    retry count; one line, cut to ``limit`` (ending "..." so a cut secret is still
    redacted, see log.Logger.redact)."""
    for noise in _LIBRARY_NOISE:
        text = noise.sub("", text)
    text = " ".join(text.split()).strip(" :(),'\"")
    return text if len(text) <= limit else text[: limit - 3] + "..."
