"""HTTP plumbing shared by both sides: sessions, TLS rules, retries with backoff.

``requests`` is imported lazily so ``di2siem --version``, ``check --offline`` and config
errors do not pay for it. TLS verification is always on, against the configured CA bundle
(else certifi's); the environment can only add proxies, and never for loopback hosts. Every
exchange has a wall-clock deadline, never follows redirects and caps what an answer may
inflate to.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any, Callable
from urllib.parse import urlsplit

from . import __version__
from .config import is_loopback_host
from .timeutil import parse_http_date_ms

USER_AGENT = f"di2siem/{__version__}"


class FatalError(Exception):
    """Not worth retrying (bad key, bad request, TLS failure); the message names the key."""


class RetryableError(Exception):
    """A transient failure: 429, 5xx, connection errors, timeouts, malformed answers."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GaveUpError(Exception):
    """Retries exhausted."""


class PastDeadline(GaveUpError):
    """Retries stopped because the next attempt would start past the policy's deadline;
    ``cause`` is the last attempt's error."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class HeaderLines(str):
    """A header sent as one line per value (``x-org-id: a``, ``x-org-id: b``...), not folded
    into one: ``requests`` keeps headers in a dict, so the values ride along on this str
    (their comma-joined text, which is what requests validates) and the guarded adapter
    writes them as separate lines (see _guarded_adapter)."""

    values: tuple[str, ...]

    def __new__(cls, values: Iterator[str] | list[str] | tuple[str, ...]) -> HeaderLines:
        values = tuple(values)
        if not values or any(not v or "\r" in v or "\n" in v or "," in v for v in values):
            raise ValueError("header line values must be non-empty, without CR, LF or comma")
        line = super().__new__(cls, ", ".join(values))
        line.values = values
        return line


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when_ms = parse_http_date_ms(value)
        if when_ms is None:
            return None
        seconds = when_ms / 1000 - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def transient_status_error(status: int, response, message: str) -> RetryableError | None:
    """408, 429 and 5xx are worth retrying (honouring Retry-After); None for the others."""
    if status in (408, 429) or status >= 500:
        return RetryableError(message, parse_retry_after(response.headers.get("Retry-After")))
    return None


class RetryPolicy:
    """Exponential backoff with full jitter; Retry-After wins when present (capped)."""

    def __init__(
        self,
        max_retries: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = rng or random.Random()
        # the run's time budget (clock() value): no wait may end past it
        self.deadline = deadline
        self.clock = clock
        self.retries = 0

    @property
    def exchange_deadline(self) -> float | None:
        """The run deadline on the clock send() measures (time.monotonic), if any."""
        return self.deadline if self.clock is time.monotonic else None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def run(self, attempt_fn: Callable[[], Any], what: str, on_retry=None) -> Any:
        """Call attempt_fn until it returns; retry RetryableError; FatalError passes through."""
        attempt = 0
        while True:
            try:
                return attempt_fn()
            except RetryableError as exc:
                if attempt >= self.max_retries:
                    raise GaveUpError(
                        f"{what}: {exc} (gave up after {attempt + 1} attempts)"
                    ) from None
                wait = self.delay(attempt, exc.retry_after)
                if self.deadline is not None and self.clock() + wait > self.deadline:
                    raise PastDeadline(
                        f"{what}: {exc} (the next attempt, in {wait:.1f}s, would pass "
                        "run_time_budget_seconds; the next run resumes)",
                        f"{what}: {exc}",
                    ) from None
                if on_retry is not None:
                    on_retry(what, str(exc), attempt + 1, wait)
                self.retries += 1
                attempt += 1
                self.sleep(wait)


# What one answer may hold once decoded. A JumpCloud page (at most 10,000 events) is far
# below this; a compressed "bomb" is cut here instead of inflating into gigabytes.
MAX_PAGE_BYTES = 256 * 1024 * 1024
# Every other answer (SIEM acknowledgements, error bodies, tokens) is only looked at briefly.
MAX_ANSWER_BYTES = 64 * 1024
# An exchange in flight when run_time_budget_seconds runs out may use this much longer to
# finish (the batch already handed to the SIEM); none runs longer.
BUDGET_GRACE_S = 5.0
_CHUNK = 1024 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # only what we decode ourselves, with a size cap


class BudgetExceeded(Exception):
    """An exchange was cut at the run time budget (plus BUDGET_GRACE_S): a stalled peer."""


class Answer:
    """A fully read HTTP answer: the subset of ``requests.Response`` the callers use."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Any, content: bytes | bytearray) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def close(self) -> None:
        """Nothing to release: the connection was handled while reading."""


def _no_proxy_needed(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname)


def _proxies_for(url: str) -> dict[str, str]:
    """Loopback never goes through a proxy (the key would travel in clear to it); other
    hosts use HTTP(S)_PROXY / ALL_PROXY / NO_PROXY from the environment, as curl does."""
    if _no_proxy_needed(url):
        return {}
    from requests.utils import get_environ_proxies

    return dict(get_environ_proxies(url))


def _default_ca_bundle() -> str:
    from requests.certs import where

    return where()


def make_session(ca_bundle: str | None, headers: dict[str, str] | None = None):
    """A session that takes nothing from the environment implicitly: no REQUESTS_CA_BUNDLE /
    CURL_CA_BUNDLE (the configured bundle, else certifi's, is always the one verified
    against), no ~/.netrc credentials. Proxies are passed per request (_proxies_for)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle if ca_bundle else _default_ca_bundle()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = ACCEPT_ENCODING
    adapter = _guarded_adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if headers:
        session.headers.update(headers)
    return session


def send(
    session,
    method: str,
    url: str,
    *,
    data: Any,
    headers: Any,
    timeout: float,
    side: str,
    url_key: str,
    deadline: float | None = None,
    limit: int = MAX_ANSWER_BYTES,
    whole: bool = False,
    name_redirect: bool = True,
) -> Answer:
    """One HTTP exchange (connect, request, answer and its body) that ends by
    ``min(now + timeout, deadline + BUDGET_GRACE_S)`` whatever the peer does.

    Redirects are never followed: a 3xx is a FatalError naming where it pointed (unless
    ``name_redirect`` is False: a URL whose path is a secret, whose redirect may echo it),
    so no request (with its credentials) ever reaches a host other than the configured one.
    The body is decoded by us with a cap: ``whole`` 2xx answers (JumpCloud pages) larger
    than ``limit`` fail, other answers (and every error body) are cut to ``limit`` bytes
    (at most MAX_ANSWER_BYTES for an error body).
    """
    import requests

    started = time.monotonic()
    ends = started + timeout
    by_budget = False
    if deadline is not None and deadline + BUDGET_GRACE_S < ends:
        ends = deadline + BUDGET_GRACE_S
        by_budget = True
    remaining = ends - started
    if remaining <= 0:
        raise BudgetExceeded(f"{side}: run_time_budget_seconds used up before the request")
    guard = _Guard(ends)
    try:
        with guard:
            try:
                response = session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=(remaining, remaining),
                    stream=True,
                    allow_redirects=False,
                    proxies=_proxies_for(url),
                )
            except requests.exceptions.SSLError as exc:
                if guard.fired:
                    raise
                key = "jumpcloud.ca_bundle" if side == "JumpCloud" else "siem.ca_bundle"
                raise FatalError(
                    f"{side} TLS verification failed ({_short(exc)}): check the URL or set {key}"
                ) from None
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
                raise FatalError(f"{side} URL is invalid: {_short(exc)}") from None
            try:
                status = response.status_code
                if 300 <= status < 400:
                    if not name_redirect:
                        raise FatalError(
                            f"{url_key} answered {status}: redirected (not followed); set "
                            f"{url_key} to the final URL"
                        )
                    raise FatalError(_redirect_message(side, status, response, url_key))
                if not 200 <= status < 300:  # an error body: only its start is shown
                    limit, whole = min(limit, MAX_ANSWER_BYTES), False
                content = _read(response, side, limit, whole)
            finally:
                response.close()
            return Answer(status, response.headers, content)
    except (FatalError, RetryableError, requests.exceptions.RequestException) as exc:
        if not guard.fired:
            raise _transport_error(exc, side, timeout) from None
    # the guard cut the exchange
    took = time.monotonic() - started
    if by_budget:
        raise BudgetExceeded(
            f"{side} did not finish answering within run_time_budget_seconds "
            f"(+{BUDGET_GRACE_S:g}s grace; cut after {took:.1f}s): a stalled or very slow peer"
        ) from None
    section, dot, _ = url_key.partition(".")
    bound = f"{section}.timeout_seconds" if dot else "the request timeout"
    raise RetryableError(
        f"{side} did not finish answering within {timeout:g}s ({bound} bounds the whole exchange)"
    ) from None


def _transport_error(exc: Exception, side: str, timeout: float) -> Exception:
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return RetryableError(f"{side} timed out after {timeout:g}s")
    if isinstance(exc, requests.exceptions.RequestException):
        return RetryableError(f"{side} connection failed: {_short(exc)}")
    return exc


def _redirect_message(side: str, status: int, response, url_key: str) -> str:
    location = response.headers.get("Location") or ""
    return (
        f"{side} answered {status} redirecting to {_describe_location(location)}: di2siem "
        f"never follows redirects (credentials stay with the configured host); set {url_key} "
        "to the final URL"
    )


def _describe_location(location: str) -> str:
    """Scheme, host and path of a redirect target; never its query, fragment or userinfo."""
    if not location:
        return "(no Location)"
    try:
        parts = urlsplit(location.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid Location)"
    text = f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else parts.path
    return _printable(text)


def _printable(text: str, limit: int = 120) -> str:
    """Peer-chosen text made safe for one log line: no spaces, quotes or control chars."""
    text = "".join(c if c.isprintable() and c not in ' "' else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(response, side: str, limit: int, whole: bool) -> bytes | bytearray:
    """The body, decoded (gzip/deflate) incrementally so no more than ``limit`` bytes are
    ever held. ``whole``: more than ``limit`` is an error; otherwise the rest is dropped."""
    raw = response.raw
    encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        decoder = _Inflater(side)
    else:
        raise RetryableError(
            f"{side} answered with Content-Encoding {_printable(encoding)!r}, "
            f"which was not asked for (Accept-Encoding: {ACCEPT_ENCODING})"
        )
    expected = response.headers.get("Content-Length")
    length = int(expected) if expected and expected.isdigit() else None
    if whole and decoder is None and length is not None and length > limit:
        raise RetryableError(_too_large(side, limit))
    out = bytearray()
    try:
        if decoder is None and length is not None and length <= limit:
            # the usual page: one read of the announced size (no growing buffer)
            data = raw.read(length, decode_content=False)
            if len(data) != length:
                raise RetryableError(f"{side} answer was cut short")
            return data
        while True:
            chunk = raw.read(_CHUNK, decode_content=False)
            if not chunk:
                break
            for piece in (chunk,) if decoder is None else decoder.feed(chunk):
                out += piece
                if len(out) > limit:
                    if whole:
                        raise RetryableError(_too_large(side, limit))
                    del out[limit:]
                    return out
    except RetryableError:
        raise
    except Exception as exc:  # urllib3 protocol errors, resets, timeouts
        raise RetryableError(f"{side} answer could not be read ({_short(exc)})") from None
    if decoder is not None and not decoder.complete and out:
        raise RetryableError(f"{side} answer was cut short (compressed stream incomplete)")
    if decoder is None and length is not None and length != len(out):
        raise RetryableError(f"{side} answer was cut short")
    return out


class _Inflater:
    """gzip (also concatenated members) or zlib data, decoded a bounded piece at a time."""

    def __init__(self, side: str) -> None:
        self.side = side
        # 32+: a zlib or a gzip header, detected (servers send either for "deflate")
        self.decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)

    @property
    def complete(self) -> bool:
        return self.decoder.eof

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``chunk``, in pieces of at most _CHUNK bytes."""
        data = chunk
        try:
            while data:
                piece = self.decoder.decompress(data, _CHUNK)
                data = self.decoder.unconsumed_tail
                if not data and self.decoder.eof and self.decoder.unused_data:
                    data = self.decoder.unused_data  # a concatenated gzip member follows
                    self.decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)
                if piece:
                    yield piece
        except zlib.error:
            raise RetryableError(f"{self.side} answer is not valid gzip/deflate data") from None


def _too_large(side: str, limit: int) -> str:
    return (
        f"{side} answer is larger than {limit // (1024 * 1024)} MiB once decoded (a page never "
        "is; a compression bomb or a broken proxy); the page was not used"
    )


class _Guard:
    """Shuts the sockets of one exchange down at its deadline, wherever it blocks (connect,
    headers, a body that trickles one byte a second): socket timeouts alone are per read."""

    def __init__(self, ends: float) -> None:
        self.ends = ends
        self.lock = threading.Lock()
        self.connections: list[Any] = []
        self.fired = False
        self.armed = False
        self.timer: threading.Timer | None = None

    def __enter__(self) -> _Guard:
        self.armed = True
        self.timer = threading.Timer(max(0.0, self.ends - time.monotonic()), self.fire)
        self.timer.daemon = True
        self.timer.start()
        _current.guard = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.guard = None
        with self.lock:
            self.armed = False
        if self.timer is not None:
            self.timer.cancel()

    def attach(self, connection: Any) -> None:
        with self.lock:
            if self.fired:
                _shut(connection)
            else:
                self.connections.append(connection)

    def fire(self) -> None:
        with self.lock:
            if not self.armed:
                return
            self.fired = True
            for connection in self.connections:
                _shut(connection)


_current = threading.local()


def _join_guard(connection: Any) -> None:
    guard = getattr(_current, "guard", None)
    if guard is not None:
        guard.attach(connection)


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_ADAPTER_CLASS: Any = None


def _guarded_adapter():
    """An HTTPAdapter whose connections join the current exchange's _Guard."""
    global _ADAPTER_CLASS
    if _ADAPTER_CLASS is None:
        from requests.adapters import HTTPAdapter
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        def _attached(cls):
            class Guarded(cls):
                # connect: a fresh connection (its TCP socket exists before the TLS
                # handshake); request: a kept-alive one taken from the pool
                def connect(self) -> None:
                    _join_guard(self)
                    super().connect()

                def request(self, *args: Any, **kwargs: Any) -> Any:
                    _join_guard(self)
                    return super().request(*args, **kwargs)

            Guarded.__name__ = "Guarded" + cls.__name__
            return Guarded

        class GuardedHTTPPool(HTTPConnectionPool):
            ConnectionCls = _attached(HTTPConnection)

        class GuardedHTTPSPool(HTTPSConnectionPool):
            ConnectionCls = _attached(HTTPSConnection)

        pools = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}

        class GuardedAdapter(HTTPAdapter):
            def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                if any(type(v) is HeaderLines for v in request.headers.values()):
                    request.headers = _header_lines(request.headers)
                return super().send(request, *args, **kwargs)

            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = pools

            def proxy_manager_for(self, proxy: str, **kwargs: Any):
                manager = super().proxy_manager_for(proxy, **kwargs)
                if not proxy.lower().startswith("socks"):
                    manager.pool_classes_by_scheme = pools
                return manager

        _ADAPTER_CLASS = GuardedAdapter
    return _ADAPTER_CLASS()


def _header_lines(headers: Any) -> Any:
    """The request's headers with every HeaderLines value as lines of its own: urllib3's
    HTTPHeaderDict, whose items() (which urllib3 2 writes the request from) yields each
    value of a repeated header separately."""
    from urllib3 import HTTPHeaderDict

    lines = HTTPHeaderDict()
    for name, value in headers.items():
        for one in value.values if type(value) is HeaderLines else (value,):
            lines.add(name, one)
    return lines


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body_excerpt(response, limit: int = 200) -> str:
    """The start of an answer's body, one line; ends with "..." when cut (so the logger can
    redact a secret cut in half, see log.Logger.redact)."""
    try:
        content = response.content
        text = bytes(content[:limit]).decode("utf-8", "replace")
    except Exception:
        return ""
    text = " ".join(text.split())
    return text + "..." if len(content) > limit else text
