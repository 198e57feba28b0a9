"""One guarded HTTP exchange: connect, request, answer and its body, ended by its deadline
whatever the peer does (the request's timeout, at most BUDGET_GRACE_S past the run's time
budget); redirects never followed, transport failures turned into plain retryable causes.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from ..errors import BudgetExceeded, FatalError, NoConnection, RetryableError, Side
from .body import MAX_ANSWER_BYTES, printable, read_body
from .causes import clean, describe, endpoint, not_connected
from .guard import ExchangeGuard
from .session import _proxies_for

# An exchange in flight when run_time_budget_seconds runs out may use this much longer to
# finish (the batch already handed to the SIEM); none runs longer.
BUDGET_GRACE_S = 5.0


class Answer:
    """A fully read HTTP answer: the subset of ``requests.Response`` the callers use."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Any, content: bytes | bytearray) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def close(self) -> None:
        """Nothing to release: the connection was handled while reading."""


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
        raise BudgetExceeded(
            f"{side}: run_time_budget_seconds used up before the request", side=side
        )
    guard = ExchangeGuard(ends)
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
                raise FatalError(_tls_failure(exc, side, url, url_key), side=side) from None
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
                raise FatalError(f"{side} URL is invalid: {clean(str(exc))}", side=side) from None
            try:
                status = response.status_code
                if 300 <= status < 400:
                    if not name_redirect:
                        raise FatalError(
                            f"{url_key} answered {status}: redirected (not followed); set "
                            f"{url_key} to the final URL",
                            side=side,
                        )
                    raise FatalError(_redirect_message(side, status, response, url_key), side=side)
                if not 200 <= status < 300:  # an error body: only its start is shown
                    limit, whole = min(limit, MAX_ANSWER_BYTES), False
                content = read_body(response, side, limit, whole)
            finally:
                response.close()
            return Answer(status, response.headers, content)
    except (FatalError, RetryableError, requests.exceptions.RequestException) as exc:
        if not guard.fired:
            raise _transport_error(exc, side, url, timeout) from None
    # the guard cut the exchange
    took = time.monotonic() - started
    if by_budget:
        raise BudgetExceeded(
            f"{side} did not finish answering within run_time_budget_seconds "
            f"(+{BUDGET_GRACE_S:g}s grace; cut after {took:.1f}s): a stalled or very slow peer",
            side=side,
        ) from None
    section, dot, _ = url_key.partition(".")
    bound = f"{section}.timeout_seconds" if dot else "the request timeout"
    raise RetryableError(
        f"{side} did not finish answering within {timeout:g}s ({bound} bounds the whole exchange)",
        side=side,
    ) from None


def _transport_error(exc: Exception, side: str, url: str, timeout: float) -> Exception:
    """A requests failure as its cause, host and port (see causes.py); one that made no
    connection at all is a NoConnection, which the retry policy does not wait long for."""
    import requests

    where = f"{side} {endpoint(url)}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RetryableError(f"{where}: timed out after {timeout:g}s connecting", side=side)
    if isinstance(exc, requests.exceptions.Timeout):
        return RetryableError(
            f"{where}: timed out after {timeout:g}s waiting for the answer", side=side
        )
    if isinstance(exc, requests.exceptions.RequestException):
        if not_connected(exc):
            return NoConnection(f"{where}: {describe(exc)}", side=side)
        return RetryableError(f"{where}: {describe(exc)}", side=side)
    return exc


def _tls_failure(exc: Exception, side: str, url: str, url_key: str) -> str:
    key = "jumpcloud.ca_bundle" if side == Side.JUMPCLOUD else "siem.ca_bundle"
    cause = describe(exc)
    if cause.startswith("TLS certificate verify failed"):
        fix = f"check {url_key} or set {key} to the CA that signed the server's certificate"
    else:
        fix = f"check that {url_key} names a TLS (https) port"
    return f"{side} {endpoint(url)}: {cause}: {fix}"


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
    return printable(text)
