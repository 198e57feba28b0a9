"""Directory Insights client: streams event pages ascending with search_after.

One requests.Session (keep-alive) per run. Each page is fetched with retries; a page is
yielded only once it parsed as a JSON array of objects, so callers never see partial data.
Auth is the admin API key (``x-api-key``) or a service account: an OAuth client-credentials
token (``Authorization: Bearer``), refreshed shortly before it expires and once on a 401.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from ..config import DEFAULT_ORG, PROVIDER_PREFIX, JumpCloudConfig
from ..errors import RetryableError, Side
from ..redaction import SecretRegistry, require_registry
from ..timeutil import http_date_ms, now_ms
from ..transport.body import MAX_PAGE_BYTES
from ..transport.exchange import send
from ..transport.retry import RetryPolicy, parse_retry_after
from ..transport.session import HeaderLines, make_session
from .pages import OnDefect, Transform, decode_keeping_bytes, decode_page, split_page
from .refusals import Scope, scope_name, status_error
from .tokens import (
    TOKEN_REFRESH_MARGIN_S,
    TokenHolder,
    basic_credentials,
    parse_token,
    token_status_error,
)

if TYPE_CHECKING:
    from ..throttle import RateLimiter


class JumpCloudClient:
    def __init__(
        self,
        cfg: JumpCloudConfig,
        policy: RetryPolicy,
        on_retry=None,
        *,
        secrets: SecretRegistry,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
        tokens: TokenHolder | None = None,
    ) -> None:
        """``secrets``: the command's registry (its Logger); the configured JumpCloud
        credentials and every token this client obtains are registered there, so whatever
        prints an answer of JumpCloud redacts them (required: no command can forget it)."""
        self.cfg = cfg
        self.policy = policy
        self.secrets = require_registry(secrets, "JumpCloudClient")
        for secret in (cfg.api_key, cfg.client_secret, basic_credentials(cfg)):
            if secret:
                self.secrets.add_secret(secret)
        # shared by every client of a run (one per parallel org): the request-rate cap and
        # the 429 pause; None: unlimited
        self.limiter = limiter
        self.next_ticket: int | None = None  # the queue place of the next request, if drawn
        self.on_retry = on_retry
        self.clock = clock
        self.url = cfg.events_url
        self.tokens = tokens if tokens is not None else TokenHolder()
        # JumpCloud's own clock: (server ms from the last answer's Date header, host ms then)
        self.server_clock: tuple[int, int] | None = None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if not cfg.service_account:
            headers["x-api-key"] = cfg.api_key or ""
        self.session = make_session(cfg.ca_bundle, headers)

    def close(self) -> None:
        self.session.close()

    # -- service account token ----------------------------------------------------------------
    def token(self, force: bool = False, stale: str | None = None) -> str:
        """A valid access token (service accounts), fetched with retries when due. ``force``
        replaces ``stale`` (the token JumpCloud refused), unless another client already did."""
        holder = self.tokens
        with holder.lock:
            due = holder.token is None or self.clock() >= holder.refresh_at
            if force and (stale is None or holder.token == stale):
                due = True
            if due:
                holder.token = None
                token, expires_in = self.policy.run(
                    self._token_attempt, "JumpCloud token", self.on_retry
                )
                self.secrets.add_secret(token)
                margin = min(TOKEN_REFRESH_MARGIN_S, expires_in * 0.2)
                holder.token = token
                holder.refresh_at = self.clock() + expires_in - margin
            return holder.token

    def _token_attempt(self) -> tuple[str, float]:
        cfg = self.cfg
        response = send(
            self.session,
            "POST",
            cfg.token_url,
            data="grant_type=client_credentials&scope=api",
            headers={
                "Authorization": "Basic " + basic_credentials(cfg),
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=cfg.timeout_seconds,
            side=Side.JUMPCLOUD,
            url_key="jumpcloud.token_url",
            deadline=self.policy.exchange_deadline,
        )
        if response.status_code != 200:
            raise token_status_error(response.status_code, response)
        return parse_token(response.content)

    def _headers(self, org: Scope) -> dict[str, str] | None:
        if isinstance(org, tuple):  # a shared query: one x-org-id line per org
            return {"x-org-id": HeaderLines(org)}
        if org == DEFAULT_ORG:
            return None
        if org.startswith(PROVIDER_PREFIX):  # the MSP portal's own activity
            return {"x-provider-id": org[len(PROVIDER_PREFIX) :]}
        return {"x-org-id": org}

    def _fetch(
        self,
        body: bytes,
        headers: dict[str, str] | None,
        limit: int,
        transform: Transform | None = None,
        org: Scope = DEFAULT_ORG,
        on_defect: OnDefect | None = None,
    ):
        response = self._query(body, headers, org)
        content = response.content
        response_headers = response.headers
        del response
        if on_defect is None:
            text, escaped = decode_page(content), False
        else:
            text, escaped = decode_keeping_bytes(content)
        del content  # not held while the page is parsed (a page may be hundreds of MB)
        text, events = split_page(text, transform, on_defect, escaped)
        page_limit = limit
        raw_limit = response_headers.get("X-Limit")
        if raw_limit:
            try:
                page_limit = max(1, min(limit, int(raw_limit)))
            except ValueError:
                raise RetryableError(
                    "JumpCloud sent a malformed X-Limit header", side=Side.JUMPCLOUD
                ) from None
        search_after = None
        if events and len(events) >= page_limit:
            raw = response_headers.get("X-Search_after")
            if not raw:
                raise RetryableError(
                    "JumpCloud answer lacks the X-Search_after header", side=Side.JUMPCLOUD
                )
            try:
                search_after = json.loads(raw)
            except ValueError:
                raise RetryableError(
                    "JumpCloud sent a malformed X-Search_after header", side=Side.JUMPCLOUD
                ) from None
            if not isinstance(search_after, list) or not search_after:
                raise RetryableError(
                    "JumpCloud sent a malformed X-Search_after header", side=Side.JUMPCLOUD
                )
        return (text, events), search_after, page_limit

    def _query(self, body: bytes, headers: dict[str, str] | None, org: Scope, path: str = ""):
        """One POST to /events<path> with the configured auth; notes JumpCloud's clock from
        the answer's Date header; anything but 200 raises (refusals.status_error)."""
        limiter = self.limiter
        if limiter is not None:
            ticket, self.next_ticket = self.next_ticket, None
            limiter.acquire(self.policy.deadline, ticket)  # both on the run's clock
        if self.cfg.service_account:
            response = self._post_bearer(body, headers, path)
        else:
            response = self._post(body, headers, path)
        self._note_date(response.headers.get("Date"))
        if limiter is not None:
            if response.status_code == 429:
                limiter.refused(parse_retry_after(response.headers.get("Retry-After")))
            else:
                limiter.answered()
        if response.status_code != 200:
            raise status_error(response.status_code, response, self.cfg.service_account, org)
        return response

    def _note_date(self, value: str | None) -> None:
        server = http_date_ms(value)
        if server is not None:
            self.server_clock = (server, now_ms())

    def server_now_ms(self) -> int | None:
        """JumpCloud's current time as its last Date header tells it (1 s resolution,
        rounded down), or None when no answer carried a usable one."""
        if self.server_clock is None:
            return None
        server, seen = self.server_clock
        return server + max(0, now_ms() - seen)

    def _post(self, body: bytes, headers: dict[str, str] | None, path: str = ""):
        return send(
            self.session,
            "POST",
            self.url + path,
            data=body,
            headers=headers,
            timeout=self.cfg.timeout_seconds,
            side=Side.JUMPCLOUD,
            url_key="jumpcloud.base_url",
            deadline=self.policy.exchange_deadline,
            limit=MAX_PAGE_BYTES,
            whole=True,
        )

    def _post_bearer(self, body: bytes, headers: dict[str, str] | None, path: str = ""):
        """POST with the current token; on a 401, one fresh token and one more try."""
        refreshed = False
        used: str | None = None
        while True:
            used = self.token(force=refreshed, stale=used)
            auth = {**(headers or {}), "Authorization": "Bearer " + used}
            response = self._post(body, auth, path)
            if response.status_code != 401 or refreshed:
                return response
            response.close()
            refreshed = True

    def pages(
        self,
        start_time: str,
        org: Scope = DEFAULT_ORG,
        transform: Transform | None = None,
        on_defect: OnDefect | None = None,
        end_time: str | None = None,
    ) -> Iterator[tuple[str, list[Any]]]:
        """Yield pages, ascending, from start_time to the end (or ``end_time``, a backfill's):
        (page text, list of ``transform(event, text, start, end, index)``), see split_page
        (and ``on_defect``). ``org`` may be a tuple of org ids: one shared query, their
        events mixed in one stream."""
        query: dict[str, Any] = {
            "service": list(self.cfg.services),
            "start_time": start_time,
            "limit": self.cfg.page_size,
            "sort": "ASC",
        }
        if end_time is not None:
            query["end_time"] = end_time
        headers = self._headers(org)
        what = (
            "JumpCloud events" if org == DEFAULT_ORG else f"JumpCloud events org={scope_name(org)}"
        )
        while True:
            body = json.dumps(query, separators=(",", ":")).encode()
            page, search_after, page_limit = self.policy.run(
                lambda b=body: self._fetch(
                    b, headers, self.cfg.page_size, transform, org, on_defect
                ),
                what,
                self.on_retry,
            )
            count = len(page[1])
            last_page = not count or count < page_limit or search_after is None
            yield page
            del page  # do not hold the previous page while fetching the next
            if last_page:
                return
            query["search_after"] = search_after

    def count(
        self,
        start_time: str,
        org: str = DEFAULT_ORG,
        end_time: str | None = None,
        services: tuple[str, ...] | None = None,
    ) -> int:
        """How many events from start_time on (until end_time; POST /events/count, the same
        query body): the backlog ``di2siem status --online`` shows, a backfill's dry run."""
        query: dict[str, Any] = {
            "service": list(services or self.cfg.services),
            "start_time": start_time,
        }
        if end_time is not None:
            query["end_time"] = end_time
        body = json.dumps(query, separators=(",", ":")).encode()

        def attempt() -> int:
            response = self._query(body, self._headers(org), org, "/count")
            try:
                value = json.loads(response.content)["count"]
            except (ValueError, TypeError, KeyError):
                value = None
            if type(value) is not int or value < 0:
                raise RetryableError(
                    "JumpCloud sent a malformed /events/count answer", side=Side.JUMPCLOUD
                )
            return value

        return self.policy.run(attempt, "JumpCloud count", self.on_retry)

    def probe(self, start_time: str, org: str = DEFAULT_ORG) -> int:
        """One small query proving the key, the org and the endpoint; returns events seen."""
        query = {
            "service": list(self.cfg.services),
            "start_time": start_time,
            "limit": 1,
            "sort": "ASC",
        }
        body = json.dumps(query, separators=(",", ":")).encode()
        page, _, _ = self.policy.run(
            lambda: self._fetch(body, self._headers(org), 1, org=org),
            "JumpCloud probe",
            self.on_retry,
        )
        return len(page[1])
