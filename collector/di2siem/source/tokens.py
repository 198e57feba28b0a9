"""Service-account tokens: the OAuth client-credentials answer read and checked (a token
that cannot be a real one is refused, never quoted), its lifetime, and the holder every
client of a run shares, so one token request serves all orgs."""

from __future__ import annotations

import base64
import json
import re
import threading

from ..config import JumpCloudConfig
from ..errors import FatalError, RetryableError, Side
from ..transport.body import body_excerpt
from ..transport.retry import transient_status_error
from .refusals import SA_KEYS

TOKEN_REFRESH_MARGIN_S = 60.0  # refresh this long before expiry (at most 20% of the lifetime)
# An access token is a random string an attacker cannot guess: RFC 6749 section 10.10 asks for
# a guessing probability of at most 2^-128, which takes at least 22 characters of RFC 6750's
# b64token alphabet (6 bits each); issuers send far longer (JWTs, Hydra's ory_at_ tokens; our
# simulator 43). Anything shorter than this floor cannot be a real token, and registering it
# as a secret would redact ordinary log text (a quote, a 1, "info").
TOKEN_MIN_CHARS = 16
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 section 2.1
# expires_in below this (0, negative, a fraction of a second) states no usable lifetime: the
# token is reused like one without expires_in, until JumpCloud refuses it (a 401 replaces it
# once), instead of being fetched anew for every request
TOKEN_MIN_LIFETIME_S = 1.0
TOKEN_DEFAULT_LIFETIME_S = 3600.0  # no usable expires_in (RFC 6749 leaves the default open)


def token_status_error(status: int, response) -> Exception:
    detail = body_excerpt(response)
    suffix = f" ({detail})" if detail else ""
    what = f"JumpCloud token endpoint answered {status}"
    if status in (400, 401, 403):
        return FatalError(f"{what}: check {SA_KEYS}{suffix}", side=Side.JUMPCLOUD)
    transient = transient_status_error(status, response, what, Side.JUMPCLOUD)
    if transient is not None:
        return transient
    return FatalError(f"{what}: check jumpcloud.token_url{suffix}", side=Side.JUMPCLOUD)


def parse_token(
    content: bytes,
    what: str = "JumpCloud token endpoint",
    side: str = Side.JUMPCLOUD,
    url_key: str = "jumpcloud.token_url",
) -> tuple[str, float]:
    """(access_token, lifetime seconds) from a token answer: malformed -> RetryableError; an
    access_token that cannot be a real one -> FatalError (never quoted: it would become a
    secret to redact); an expires_in that states no usable lifetime -> the default. ``what``,
    ``side`` and ``url_key`` name the issuer in errors (another OAuth issuer than JumpCloud)."""
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RetryableError(f"{what} sent a malformed answer", side=side) from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token or any(c in token for c in " \r\n"):
        raise RetryableError(f"{what} sent no usable access_token", side=side)
    if not _B64TOKEN.fullmatch(token):
        raise FatalError(
            f"{what} sent an access_token with characters a bearer token "
            f"cannot hold (RFC 6750 allows letters, digits and -._~+/ then =); check {url_key}",
            side=side,
        )
    if len(token) < TOKEN_MIN_CHARS:
        raise FatalError(
            f"{what} sent an access_token shorter than {TOKEN_MIN_CHARS} "
            f"characters, which cannot be a real token; check {url_key}",
            side=side,
        )
    expires_in = data.get("expires_in", TOKEN_DEFAULT_LIFETIME_S)
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            expires_in = None
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        raise RetryableError(f"{what} sent a malformed expires_in", side=side)
    if not expires_in >= TOKEN_MIN_LIFETIME_S:  # also NaN
        return token, TOKEN_DEFAULT_LIFETIME_S
    return token, min(float(expires_in), 10 * 365 * 86400.0)


def basic_credentials(cfg: JumpCloudConfig) -> str:
    """The token request's Basic credentials (base64 of client_id:client_secret); "" for
    an API key."""
    if not cfg.service_account:
        return ""
    return base64.b64encode(f"{cfg.client_id}:{cfg.client_secret}".encode()).decode("ascii")


class TokenHolder:
    """A service account's access token, shared by every client of a run (one per lane):
    one token request serves all orgs."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.refresh_at = 0.0
        self.lock = threading.Lock()
