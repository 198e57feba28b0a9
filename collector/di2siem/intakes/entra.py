"""Microsoft Entra ID access tokens by client credentials, for an intake that needs them
(sentinel): ``POST {authority}/{tenant}/oauth2/v2.0/token`` with the app's ``client_id``,
``client_secret``, ``grant_type=client_credentials`` and ``scope`` as a form. A token is kept
until shortly before it expires (TOKEN_REFRESH_MARGIN_S, at most a fifth of its lifetime) or
until the intake refuses it (renew). The form holds the secret: it is never in a log line or
an error, which quote only the issuer's error code and the first line of its description
(with the secret cut out, should an issuer echo it)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable
from urllib.parse import quote_plus, urlencode

from ..errors import FatalError, Side
from ..source.tokens import TOKEN_REFRESH_MARGIN_S, parse_token
from ..transport.exchange import send
from ..transport.retry import transient_status_error
from ..transport.session import make_session

WHAT = "Microsoft Entra token endpoint"
APP_KEYS = "siem.tenant_id / siem.client_id / siem.client_secret"
# AADSTS error codes -> what to check
AADSTS_FIXES = {
    "7000215": "siem.client_secret (copy the secret's Value, not its Secret ID)",
    "7000222": "siem.client_secret (it expired: add a new client secret to the app)",
    "700016": "siem.client_id (no such application in the tenant siem.tenant_id)",
    "90002": "siem.tenant_id (no such tenant)",
    "900023": "siem.tenant_id (not a tenant GUID or domain)",
    "70011": "siem.scope",
    "1002012": "siem.scope",
    "500011": "siem.scope (no such resource in the tenant)",
}


class EntraTokens:
    """One app's access token, fetched when missing, due or renewed (thread-safe)."""

    def __init__(
        self, options: Any, timeout: float, ca_bundle: str | None, clock: Callable = time.monotonic
    ) -> None:
        self.url = options.token_url
        self.secret = options.client_secret
        self.form = urlencode(
            {
                "client_id": options.client_id,
                "client_secret": options.client_secret,
                "grant_type": "client_credentials",
                "scope": options.scope,
            }
        )
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.clock = clock
        self.token: str | None = None
        self.refresh_at = 0.0
        self.fetched = 0  # tokens obtained so far
        self._lock = threading.Lock()

    def bearer(self, deadline: float | None) -> str:
        """A token valid for a while yet: the kept one, else a new one."""
        with self._lock:
            if self.token is None or self.clock() >= self.refresh_at:
                self.token = None
                token, lifetime = self._fetch(deadline)
                self.token = token
                self.refresh_at = (
                    self.clock() + lifetime - min(TOKEN_REFRESH_MARGIN_S, lifetime / 5)
                )
                self.fetched += 1
            return self.token

    def renew(self) -> None:
        """The intake refused the kept token: the next bearer() fetches a new one."""
        with self._lock:
            self.token = None

    def scrub(self, text: str) -> str:
        """``text`` without the secret or the current token (an answer that echoes them)."""
        for secret in (self.secret, quote_plus(self.secret), self.token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def _fetch(self, deadline: float | None) -> tuple[str, float]:
        session = make_session(self.ca_bundle)  # one token an hour: no connection kept
        try:
            response = send(
                session,
                "POST",
                self.url,
                data=self.form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.timeout,
                side=Side.SIEM,
                url_key="siem.authority",
                deadline=deadline,
            )
        finally:
            session.close()
        status = response.status_code
        if status != 200:
            raise self._refusal(status, response)
        return parse_token(bytes(response.content), WHAT, Side.SIEM, "siem.authority")

    def _refusal(self, status: int, response) -> Exception:
        what = f"{WHAT} answered {status}"
        transient = transient_status_error(status, response, what, Side.SIEM)
        if transient is not None:
            return transient
        error, description, code = _aad_error(response.content)
        detail = self.scrub(f"{error}: {description}" if description else error)
        detail = "".join(c if c.isprintable() else " " for c in detail)[:240]
        suffix = f" ({detail})" if detail else ""
        if status in (400, 401, 403):
            fix = AADSTS_FIXES.get(code, APP_KEYS)
            return FatalError(f"{what}{suffix}: check {fix}", side=Side.SIEM)
        return FatalError(
            f"{what}{suffix}: check siem.authority and siem.tenant_id", side=Side.SIEM
        )


def _aad_error(content: bytes) -> tuple[str, str, str]:
    """(error, the description's first line, its AADSTS code) of an error answer."""
    try:
        data = json.loads(bytes(content).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "", "", ""
    if not isinstance(data, dict):
        return "", "", ""
    error = data.get("error") if isinstance(data.get("error"), str) else ""
    description = data.get("error_description")
    first = (
        description.splitlines()[0].strip() if isinstance(description, str) and description else ""
    )
    code = ""
    if first.startswith("AADSTS"):
        code = first[6:].split(":")[0].strip()
    return error, first, code
