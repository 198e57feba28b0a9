"""Microsoft Sentinel's way in on loopback: a Microsoft Entra token endpoint and the Azure
Monitor Logs Ingestion API, on one server (so ``authority`` and ``endpoint`` are both its URL).

Faithful to shared/reference/intakes.md (Microsoft Learn "Logs Ingestion API in Azure
Monitor", "Azure Monitor service limits"):
- ``POST /{tenant}/oauth2/v2.0/token``, a form (``application/x-www-form-urlencoded``) with
  ``client_id``, ``client_secret``, ``grant_type=client_credentials`` and ``scope`` (the
  resource's ``.default``, with or without the resource URI's trailing slash); 200
  ``{"token_type": "Bearer", "expires_in": N, "access_token": ...}``; errors as Entra answers
  them, ``{"error", "error_description": "AADSTS<code>: ...", "error_codes": [...]}`` (a bad
  secret is 401 invalid_client AADSTS7000215). ``expires_in`` is configurable (short in
  tests); ``token_lifetime_s`` makes the endpoint below refuse a token sooner than announced
  (a revoked or clock-skewed token).
- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: the tenant's OpenID Connect
  discovery document, naming this server's token endpoint (what MSAL, under azure-identity's
  credentials, reads before it asks for a token).
- ``POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01``: the API version
  is required (400), ``Authorization: Bearer`` a live token of ours (401 otherwise, expired
  included), the DCR immutable id and the stream checked (404), ``role_granted`` False answers
  403 as an app without "Monitoring Metrics Publisher" gets (until ``grant_role``; with
  ``role_propagates_after_s`` the grant takes effect that long later), a body over
  ``max_body_bytes`` (1 MiB, 1,048,576: what Azure's own client, azure-monitor-ingestion,
  fills each request up to before gzip, and the service takes) is 413, compressed or not (a
  gzip body is measured before and after decompression), string values over 64 KB are
  truncated to 64 KB (``FIELD_LIMIT_BYTES``), the body must be a JSON
  array of objects (400), success is 204 with no body. Rows are kept in ``rows``; a row
  without a readable ``TimeGenerated`` is dropped, as the DCR's transformation drops it
  (``dropped_rows``). 429 with Retry-After: ``throttle``; a delivered batch whose answer is
  lost: ``stall``. No deduplication, no partial success (all or nothing, as documented).
- ``empty_array_status``: what an empty array gets (204, or 400 InvalidPayload); the API does
  not document it (unconfirmed), so the collector's check must pass with either.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from .plumbing.base import BaseSimulator
from .plumbing.wire import Request, Response

API_VERSION = "2023-01-01"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
FIELD_LIMIT_BYTES = 64 * 1024
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "3f1c2b7a-5d4e-4a9b-8c6d-0e1f2a3b4c5d"
DCR_ID = "dcr-3b7e1f0c9a2d4e6f8b1c3d5e7f9a0b2c"
STREAM = "Custom-JumpCloudDI_CL"
SCOPE = "https://monitor.azure.com//.default"
DISCOVERY_SUFFIX = "/v2.0/.well-known/openid-configuration"


def _aad(status: int, error: str, code: int, text: str) -> Response:
    return Response.json(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {secrets.token_hex(16)}",
            "error_codes": [code],
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
        },
    )


def _azure(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return Response.json(status, {"error": {"code": code, "message": message}}, headers)


class SentinelSimulator(BaseSimulator):
    name = "sentinel"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant_id: str = TENANT,
        client_id: str = CLIENT_ID,
        client_secret: str = "sentinel-app-secret-7Qx~9vL2",
        dcr_immutable_id: str = DCR_ID,
        stream: str = STREAM,
        scope: str = SCOPE,
        expires_in: int = 3599,
        token_lifetime_s: float | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        empty_array_status: int = 204,
        role_granted: bool = True,
    ) -> None:
        super().__init__(host, port)
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.dcr_immutable_id, self.stream, self.scope = dcr_immutable_id, stream, scope
        self.expires_in = expires_in
        self.token_lifetime_s = token_lifetime_s
        self.max_body_bytes = self.api_body_limit = max_body_bytes
        self.empty_array_status = empty_array_status
        self.role_granted = role_granted
        self._role_at: float | None = None
        self._lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> when it stops being accepted
        self.rows: list[dict[str, Any]] = []
        self.dropped_rows = 0
        self.largest_body = 0  # the largest request body ever received (bytes on the wire)
        self.token_requests = 0
        self.throttled = 0  # requests still to answer 429 (throttle)
        self.throttle_retry_after = 1
        self.posts: list[tuple[float, int]] = []  # (monotonic time, status) per ingestion POST
        self.stalls = 0  # accepted requests still to answer only after stall_s (stall)
        self.stall_s = 0.0

    def __enter__(self) -> SentinelSimulator:
        return self.start()  # type: ignore[return-value]

    @property
    def token_path(self) -> str:
        return f"/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def ingestion_path(self) -> str:
        return f"/dataCollectionRules/{self.dcr_immutable_id}/streams/{self.stream}"

    def events(self) -> list[Any]:
        with self._lock:
            return [row.get("Event") for row in self.rows]

    def grant_role(self, propagates_after_s: float = 0.0) -> None:
        """The app gets "Monitoring Metrics Publisher" on the DCR, effective that much later."""
        self._role_at = time.monotonic() + propagates_after_s

    def throttle(self, count: int, retry_after: int = 1) -> None:
        """The next ``count`` ingestion requests get 429 with ``Retry-After`` seconds, as when
        the DCR's 12,000 requests or 2 GB per minute are used up."""
        self.throttled, self.throttle_retry_after = count, retry_after

    def stall(self, count: int, seconds: float) -> None:
        """The next ``count`` accepted requests keep their rows, then answer only after
        ``seconds``: past the client's timeout, the answer of a delivered batch is lost."""
        self.stalls, self.stall_s = count, seconds

    def expire_tokens(self) -> None:
        """Every token handed out so far stops being accepted (401), as at expiry."""
        with self._lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.rows.clear()
            self.tokens.clear()
            self.dropped_rows = self.largest_body = self.token_requests = 0
            self.posts.clear()

    def handle_api(self, request: Request) -> Response:
        if request.path.endswith("/oauth2/v2.0/token"):
            return self._token(request)
        if request.path.endswith(DISCOVERY_SUFFIX) and request.method == "GET":
            return self._openid_configuration(request)
        if request.path.startswith("/dataCollectionRules/"):
            response = self._ingest(request)
            with self._lock:
                self.posts.append((time.monotonic(), response.status))
            return response
        return Response.message(404, f"Not Found: {request.path}")

    # -- Microsoft Entra ID ----------------------------------------------------------------
    def _openid_configuration(self, request: Request) -> Response:
        tenant = request.path.split("/")[1]
        if tenant != self.tenant_id:
            return _aad(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return Response.json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{self.url}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            },
        )

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return _aad(400, "invalid_request", 900561, "The endpoint only accepts POST requests.")
        self.token_requests += 1
        tenant = request.path.split("/")[1]
        if tenant != self.tenant_id:
            return _aad(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _aad(
                400, "invalid_request", 900144, "The request body must contain 'grant_type'."
            )
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _aad(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        if form.get("client_id") != self.client_id:
            return _aad(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the "
                f"directory '{self.tenant_id}'.",
            )
        if form.get("client_secret") != self.client_secret:
            return _aad(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID.",
            )
        if _resource(form.get("scope") or "") != _resource(self.scope):
            return _aad(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        token = secrets.token_urlsafe(64)
        lifetime = self.expires_in if self.token_lifetime_s is None else self.token_lifetime_s
        with self._lock:
            self.tokens[token] = time.monotonic() + lifetime
        self.stats_counter.incr("tokens_issued")
        return Response.json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in,
                "access_token": token,
            },
        )

    # -- the Logs Ingestion API ------------------------------------------------------------
    def _ingest(self, request: Request) -> Response:
        if request.method != "POST":
            return _azure(405, "MethodNotAllowed", "Use POST.")
        version = request.query.get("api-version")
        if version != API_VERSION:
            return _azure(400, "InvalidApiVersion", f"The api-version '{version}' is invalid.")
        refusal = self._authorize(request)
        if refusal is not None:
            return refusal
        parts = request.path.split("/")
        if len(parts) != 5 or parts[2] != self.dcr_immutable_id:
            return _azure(404, "NotFound", "Data collection rule with immutable Id not found.")
        if parts[4] != self.stream:
            return _azure(404, "InvalidStream", f"Stream '{parts[4]}' is not declared in the DCR.")
        if not self._role_effective():
            return _azure(
                403,
                "OperationFailed",
                "The authentication token provided does not have access to ingest data for "
                f"the data collection rule with immutable Id '{self.dcr_immutable_id}'.",
            )
        if self.throttled > 0:
            self.throttled -= 1
            return _azure(
                429,
                "TooManyRequests",
                "Request rate or data volume of the data collection rule exceeded.",
                {"Retry-After": str(self.throttle_retry_after)},
            )
        size = request.oversize or len(request.body)
        if request.oversize is not None or size > self.max_body_bytes:
            return _azure(
                413,
                "ContentLengthLimitExceeded",
                f"Maximum allowed content length: {self.max_body_bytes} bytes. Provided "
                f"content length: {size} bytes.",
            )
        with self._lock:
            self.largest_body = max(self.largest_body, len(request.body))
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _azure(400, "InvalidContentType", "Content-Type must be application/json.")
        try:
            rows = json.loads(request.body)
        except ValueError:
            return _azure(400, "InvalidPayload", "The payload is not valid JSON.")
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return _azure(400, "InvalidPayload", "The payload must be a JSON array of objects.")
        if not rows and self.empty_array_status != 204:
            return _azure(self.empty_array_status, "InvalidPayload", "The payload is empty.")
        kept = [_truncated(row) for row in rows if _time_generated(row)]
        with self._lock:
            if self.keep_records:
                self.rows.extend(kept)
            self.record_out(kept)
            self.dropped_rows += len(rows) - len(kept)
        self.stats_counter.incr("accepted_rows", len(kept))
        if self.stalls > 0:
            self.stalls -= 1
            time.sleep(self.stall_s)
        return Response(204)

    def _authorize(self, request: Request) -> Response | None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme != "Bearer" or not token:
            return _azure(401, "MissingToken", "An Authorization Bearer token is required.")
        with self._lock:
            until = self.tokens.get(token)
        if until is None:
            return _azure(401, "InvalidToken", "The provided access token is not valid.")
        if time.monotonic() >= until:
            self.stats_counter.incr("expired_tokens_refused")
            return _azure(401, "InvalidToken", "The provided access token has expired.")
        return None

    def _role_effective(self) -> bool:
        if self.role_granted:
            return True
        if self._role_at is not None and time.monotonic() >= self._role_at:
            self.role_granted = True
        return self.role_granted


def _resource(scope: str) -> str:
    """The resource a ``.default`` scope asks for. Entra takes both spellings alike: the docs'
    ``https://monitor.azure.com//.default`` (the resource URI with its trailing slash) and the
    Azure SDK's ``https://monitor.azure.com/.default``."""
    if not scope.endswith("/.default"):
        return scope
    return scope[: -len("/.default")].rstrip("/")


def _time_generated(row: dict[str, Any]) -> bool:
    value = row.get("TimeGenerated")
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _truncated(row: dict[str, Any]) -> dict[str, Any]:
    """The row as stored: string values cut to FIELD_LIMIT_BYTES (UTF-8)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, str) and len(value.encode()) > FIELD_LIMIT_BYTES:
            value = value.encode()[:FIELD_LIMIT_BYTES].decode("utf-8", "ignore")
        out[key] = value
    return out
