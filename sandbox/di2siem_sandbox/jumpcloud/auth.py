"""Who may ask, and for which orgs: the service accounts' POST /oauth2/token (HTTP Basic client
id:secret, client_credentials; Bearer tokens that expire), the x-api-key check, and the stores a
request's x-org-id / x-provider-id headers name."""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from urllib.parse import parse_qs

from ..plumbing.stats import Stats
from ..plumbing.wire import Request, Response
from .store import PROVIDER_PREFIX

TOKEN_PATH = "/oauth2/token"
DEFAULT_API_KEY = "sandbox-jumpcloud-key"


class Auth:
    """The JumpCloud simulator's authentication and org scoping (JumpCloudSimulator sets the
    attributes below)."""

    api_key: str
    non_admin_keys: frozenset[str]
    org_ids: list[str]
    provider_id: str | None
    service_accounts: dict[str, str]
    token_ttl_s: float
    token_reported_ttl_s: float | None
    issued_tokens: list[str]
    stats_counter: Stats
    _tokens: dict[str, float]
    _lock: threading.Lock

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return Response.message(405, f"Method Not Allowed: use POST {TOKEN_PATH}")
        try:
            form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8")).items()}
        except UnicodeDecodeError:
            form = {}
        if form.get("grant_type") != "client_credentials":
            return Response.json(
                400, {"error": "unsupported_grant_type", "error_description": "client_credentials"}
            )
        if "api" not in (form.get("scope") or "").split():
            return Response.json(400, {"error": "invalid_scope", "error_description": "use api"})
        auth = request.header("Authorization") or ""
        client_id = secret = None
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, sep, secret = decoded.partition(":")
            if not sep:
                client_id = secret = None
        if client_id is None or self.service_accounts.get(client_id) != secret:
            self.stats_counter.incr("tokens_refused")
            return Response.json(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
            )
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_ttl_s
            self.issued_tokens.append(token)
        self.stats_counter.incr("tokens_issued")
        reported = (
            self.token_ttl_s if self.token_reported_ttl_s is None else self.token_reported_ttl_s
        )
        expires_in: float = int(reported) if float(reported).is_integer() else reported
        return Response.json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": expires_in,
                "scope": "api",
            },
        )

    def expire_tokens(self) -> None:
        """Every issued token stops working now (as if all had expired)."""
        with self._lock:
            self._tokens.clear()

    def _authenticate(self, request: Request) -> Response | None:
        auth = request.header("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            with self._lock:
                expiry = self._tokens.get(auth[7:].strip())
            if expiry is None:
                return Response.message(401, "Unauthorized: unknown access token")
            if time.monotonic() >= expiry:
                self.stats_counter.incr("expired_tokens_refused")
                return Response.message(401, "Unauthorized: access token expired")
            if (
                not [v for v in request.header_all("x-org-id") if v.strip()]
                and not (request.header("x-provider-id") or "").strip()
            ):
                return Response.message(
                    400, "x-org-id header is required with a service account token"
                )
            return None
        key = request.header("x-api-key")
        if not key:
            return Response.message(401, "Unauthorized: missing x-api-key header")
        if key in self.non_admin_keys:
            return Response.message(403, "Forbidden: this API key is not an administrator key")
        if key != self.api_key:
            return Response.message(401, "Unauthorized: invalid x-api-key")
        return None

    def _resolve_scope(self, request: Request) -> tuple[str, ...] | Response:
        """The stores one request reads: the provider's (x-provider-id), or the orgs named by
        its x-org-id headers (several allowed: the answer mixes their events), or the key's
        only org."""
        provider = (request.header("x-provider-id") or "").strip()
        if provider:
            if provider != self.provider_id:
                return Response.message(403, f"Forbidden: provider {provider} is not accessible")
            return (PROVIDER_PREFIX + provider,)
        given: list[str] = []
        for value in request.header_all("x-org-id"):
            # one header may also carry a comma-separated list (HTTP folds repeated headers)
            for org in value.split(","):
                org = org.strip()
                if org and org not in given:
                    given.append(org)
        if not given:
            if len(self.org_ids) == 1:
                return (self.org_ids[0],)
            return Response.message(
                400,
                "x-org-id header is required: this key administers several organizations "
                f"({', '.join(self.org_ids)})",
            )
        for org in given:
            if org not in self.org_ids:
                return Response.message(403, f"Forbidden: organization {org} is not accessible")
        return tuple(given)
