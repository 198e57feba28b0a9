"""Directory Insights client: streams event pages ascending with search_after.

One requests.Session (keep-alive) per run. Each page is fetched with retries; a page is
yielded only once it parsed as a JSON array of objects, so callers never see partial data.
Auth is the admin API key (``x-api-key``) or a service account: an OAuth client-credentials
token (``Authorization: Bearer``), refreshed shortly before it expires and once on a 401.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Union

from .config import DEFAULT_ORG, PROVIDER_PREFIX, JumpCloudConfig
from .redaction import SecretRegistry, require_registry
from .throttle import RateLimiter
from .timeutil import http_date_ms, now_ms
from .transport.body import MAX_PAGE_BYTES, body_excerpt
from .transport.exchange import send
from .transport.retry import (
    FatalError,
    RetryableError,
    RetryPolicy,
    parse_retry_after,
    transient_status_error,
)
from .transport.session import HeaderLines, make_session

SIDE = "JumpCloud"
SA_KEYS = "jumpcloud.client_id / jumpcloud.client_secret"
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
_WS = " \t\r\n"
# How many values JSON does not allow (NaN, Infinity, -Infinity) or Python cannot hold as an
# int (more digits than sys.get_int_max_str_digits()) were decoded so far: the pipeline
# re-serialises an event during whose parse this moved, instead of splicing its text.
NONSTANDARD = [0]


def _nonstandard_constant(name: str) -> float:
    NONSTANDARD[0] += 1
    return float(name)  # what json does; the shaper turns it into the string "NaN" etc.


def _long_int(digits: str) -> int | str:
    try:
        return int(digits)
    except ValueError:  # over Python's int digit limit: kept as its digits, a string
        NONSTANDARD[0] += 1
        return digits


_decoder = json.JSONDecoder(parse_constant=_nonstandard_constant)
_scan_once = _decoder.scan_once  # raises StopIteration where no JSON value starts
# used only when _scan_once failed: same, but for integers too long for int()
_tolerant_scan_once = json.JSONDecoder(
    parse_constant=_nonstandard_constant, parse_int=_long_int
).scan_once
Transform = Callable[[dict, str, int, int, int], Any]
# what one query reads: an org key (config.org_keys) or several orgs' ids (a shared query)
Scope = Union[str, tuple]


def _pair(event: dict[str, Any], text: str, start: int, end: int, index: int) -> Any:
    return (event, text[start:end])


def decode_page(content: bytes | bytearray) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise RetryableError("JumpCloud sent a malformed answer (not UTF-8)") from None


# Invalid UTF-8 bytes, as the surrogateescape decoder keeps them (U+DC80..U+DCFF)
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
UNPARSABLE = ("not an object", "nested too deep to parse", "not valid UTF-8")
# Called for an element of a well-formed page that can never become an event (one of
# UNPARSABLE): (its exact text, why); what it returns takes the element's place in the page.
OnDefect = Callable[[str, str], Any]


def decode_keeping_bytes(content: bytes | bytearray) -> tuple[str, bool]:
    """(text, whether it holds invalid UTF-8 bytes, kept as U+DC80..U+DCFF)."""
    try:
        return content.decode("utf-8"), False
    except UnicodeDecodeError:
        return content.decode("utf-8", "surrogateescape"), True


def raw_bytes(text: str) -> bytes:
    """The bytes an element's text was decoded from (invalid UTF-8 bytes included)."""
    return text.encode("utf-8", "surrogateescape")


def _value_end(text: str, i: int) -> int:
    """Where the JSON value starting at text[i] (an object or array) ends, by its brackets
    (strings skipped); ValueError when it does not end. Only for values too deep to parse."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unterminated value")


def split_page(
    content: bytes | bytearray | str,
    transform: Transform | None = None,
    on_defect: OnDefect | None = None,
    escaped: bool = False,
) -> tuple[str, list[Any]]:
    """Parse a page (a JSON array of objects): (page text, list of
    ``transform(event, text, start, end, index)``), by default (event, event text) pairs.

    The event's own text (``text[start:end]``) lets the shaper ship it without
    re-serialising it; transforming while parsing means a page never holds all its decoded
    dicts at once, only small tuples and the page text (one block of memory).
    Anything else than an array of objects raises RetryableError (malformed answer), except,
    given ``on_defect``, an element that can never be an event in an otherwise well-formed
    page (``null``, nested past what the parser can hold, invalid UTF-8 inside it): it is
    handed to ``on_defect`` and the page goes on (the index counts events only). ``escaped``:
    the text came from decode_keeping_bytes and holds invalid bytes.
    """
    transform = transform or _pair
    if isinstance(content, str):
        text = content
    elif on_defect is None:
        text = decode_page(content)
    else:
        text, escaped = decode_keeping_bytes(content)
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    if i >= n or text[i] != "[":
        try:
            json.loads(text)
        except ValueError:
            raise RetryableError("JumpCloud sent a malformed answer (not JSON)") from None
        raise RetryableError("JumpCloud sent a malformed answer (not a JSON array)")
    i += 1
    out: list[Any] = []
    append = out.append
    index = 0
    try:
        while text[i] in _WS:
            i += 1
        if text[i] == "]":
            i += 1
        else:
            while True:
                # the C scanner itself (raw_decode is a Python wrapper around it)
                try:
                    try:
                        event, end = _scan_once(text, i)
                    except ValueError:
                        event, end = _tolerant_scan_once(text, i)
                except RecursionError:
                    if on_defect is None:
                        raise RetryableError(
                            "JumpCloud sent an event nested too deep to parse"
                        ) from None
                    end = _value_end(text, i)
                    append(on_defect(text[i:end], UNPARSABLE[1]))
                else:
                    if type(event) is not dict:
                        if on_defect is None:
                            raise RetryableError(
                                "JumpCloud sent a malformed answer (non-object event)"
                            )
                        append(on_defect(text[i:end], UNPARSABLE[0]))
                    elif escaped and _ESCAPED_BYTES.search(text, i, end):
                        append(on_defect(text[i:end], UNPARSABLE[2]))
                    else:
                        append(transform(event, text, i, end, index))
                        index += 1
                c = text[end]
                if c == ",":  # compact pages: the next event starts right after the comma
                    i = end + 1
                    if text[i] in _WS:
                        while text[i] in _WS:
                            i += 1
                    continue
                i = end
                while c in _WS:
                    i += 1
                    c = text[i]
                i += 1
                if c == ",":
                    while text[i] in _WS:
                        i += 1
                elif c == "]":
                    break
                else:
                    raise ValueError("expected , or ]")
    except (ValueError, IndexError, StopIteration):
        raise RetryableError("JumpCloud sent a malformed answer (not JSON)") from None
    if text[i:].strip(_WS):
        raise RetryableError("JumpCloud sent a malformed answer (data after the array)")
    return text, out


class OrgRefused(FatalError):
    """JumpCloud refused the query's org (402 Directory Insights not enabled, 403 not
    accessible). To a shared query this does not say which member: each is served alone."""


def _insights_disabled(org: str) -> FatalError:
    """402: a plan/licence problem of that org, not a transient error nor a wrong URL."""
    if org == DEFAULT_ORG:
        return OrgRefused(
            "Directory Insights is not enabled for this organization (JumpCloud 402): enable "
            "Directory Insights on the organization's plan"
        )
    if org.startswith(PROVIDER_PREFIX):
        return OrgRefused(
            f"provider {org[len(PROVIDER_PREFIX) :]}: Directory Insights is not enabled for the "
            "MSP portal (JumpCloud 402): enable it or remove jumpcloud.provider_id"
        )
    return OrgRefused(
        f"org {org}: Directory Insights is not enabled for this organization (JumpCloud 402): "
        "enable Directory Insights on its plan or remove it from jumpcloud.org_ids"
    )


def scope_name(org: Scope) -> str:
    """An org key as is; a shared query's orgs as ``first+N`` (log lines stay short)."""
    if isinstance(org, tuple):
        return f"{org[0]}+{len(org) - 1}" if len(org) > 1 else org[0]
    return org


def _status_error(
    status: int, response, service_account: bool = False, org: Scope = DEFAULT_ORG
) -> Exception:
    if status == 402:
        if isinstance(org, tuple):  # which org of the group is not said: each one alone will
            return OrgRefused(
                f"orgs {scope_name(org)}: Directory Insights is not enabled for one of them "
                "(JumpCloud 402 to a shared query); they are served alone next"
            )
        return _insights_disabled(org)
    detail = body_excerpt(response)
    suffix = f" ({detail})" if detail else ""
    if status == 401:
        keys = SA_KEYS if service_account else "jumpcloud.api_key"
        return FatalError(f"JumpCloud answered 401: check {keys}{suffix}")
    if status == 403:
        if service_account:
            return OrgRefused(
                f"JumpCloud answered 403: check {SA_KEYS} (the service account must be "
                f"allowed to read Directory Insights) and jumpcloud.org_ids{suffix}"
            )
        return OrgRefused(
            "JumpCloud answered 403: check jumpcloud.api_key (it must be an administrator "
            f"API key allowed to read Directory Insights) and jumpcloud.org_ids{suffix}"
        )
    if status == 400:
        return FatalError(
            "JumpCloud answered 400: check jumpcloud.services, jumpcloud.org_ids and "
            f"jumpcloud.initial_days_back{suffix}"
        )
    if status == 404:
        return FatalError(
            f"JumpCloud answered 404: check jumpcloud.base_url / jumpcloud.region{suffix}"
        )
    transient = transient_status_error(status, response, f"JumpCloud answered {status}")
    if transient is not None:
        return transient
    return FatalError(f"JumpCloud answered {status}: check jumpcloud.base_url{suffix}")


def _token_status_error(status: int, response) -> Exception:
    detail = body_excerpt(response)
    suffix = f" ({detail})" if detail else ""
    what = f"JumpCloud token endpoint answered {status}"
    if status in (400, 401, 403):
        return FatalError(f"{what}: check {SA_KEYS}{suffix}")
    transient = transient_status_error(status, response, what)
    if transient is not None:
        return transient
    return FatalError(f"{what}: check jumpcloud.token_url{suffix}")


def _parse_token(content: bytes) -> tuple[str, float]:
    """(access_token, lifetime seconds) from a token answer: malformed -> RetryableError; an
    access_token that cannot be a real one -> FatalError (never quoted: it would become a
    secret to redact); an expires_in that states no usable lifetime -> the default."""
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RetryableError("JumpCloud token endpoint sent a malformed answer") from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token or any(c in token for c in " \r\n"):
        raise RetryableError("JumpCloud token endpoint sent no usable access_token")
    if not _B64TOKEN.fullmatch(token):
        raise FatalError(
            "JumpCloud token endpoint sent an access_token with characters a bearer token "
            "cannot hold (RFC 6750 allows letters, digits and -._~+/ then =); check "
            "jumpcloud.token_url"
        )
    if len(token) < TOKEN_MIN_CHARS:
        raise FatalError(
            f"JumpCloud token endpoint sent an access_token shorter than {TOKEN_MIN_CHARS} "
            "characters, which cannot be a real token; check jumpcloud.token_url"
        )
    expires_in = data.get("expires_in", TOKEN_DEFAULT_LIFETIME_S)
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            expires_in = None
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        raise RetryableError("JumpCloud token endpoint sent a malformed expires_in")
    if not expires_in >= TOKEN_MIN_LIFETIME_S:  # also NaN
        return token, TOKEN_DEFAULT_LIFETIME_S
    return token, min(float(expires_in), 10 * 365 * 86400.0)


def _basic_credentials(cfg: JumpCloudConfig) -> str:
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
        for secret in (cfg.api_key, cfg.client_secret, _basic_credentials(cfg)):
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
                "Authorization": "Basic " + _basic_credentials(cfg),
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=cfg.timeout_seconds,
            side=SIDE,
            url_key="jumpcloud.token_url",
            deadline=self.policy.exchange_deadline,
        )
        if response.status_code != 200:
            raise _token_status_error(response.status_code, response)
        return _parse_token(response.content)

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
                raise RetryableError("JumpCloud sent a malformed X-Limit header") from None
        search_after = None
        if events and len(events) >= page_limit:
            raw = response_headers.get("X-Search_after")
            if not raw:
                raise RetryableError("JumpCloud answer lacks the X-Search_after header")
            try:
                search_after = json.loads(raw)
            except ValueError:
                raise RetryableError("JumpCloud sent a malformed X-Search_after header") from None
            if not isinstance(search_after, list) or not search_after:
                raise RetryableError("JumpCloud sent a malformed X-Search_after header")
        return (text, events), search_after, page_limit

    def _query(self, body: bytes, headers: dict[str, str] | None, org: Scope, path: str = ""):
        """One POST to /events<path> with the configured auth; notes JumpCloud's clock from
        the answer's Date header; anything but 200 raises (see _status_error)."""
        limiter = self.limiter
        if limiter is not None:
            ticket, self.next_ticket = self.next_ticket, None
            limiter.acquire(self.policy.deadline, ticket)  # both on the pipeline's clock
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
            raise _status_error(response.status_code, response, self.cfg.service_account, org)
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
            side=SIDE,
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
    ) -> Iterator[tuple[str, list[Any]]]:
        """Yield pages, ascending, from start_time to the end: (page text, list of
        ``transform(event, text, start, end, index)``), see split_page (and ``on_defect``).
        ``org`` may be a tuple of org ids: one shared query, their events mixed in one
        stream."""
        query: dict[str, Any] = {
            "service": list(self.cfg.services),
            "start_time": start_time,
            "limit": self.cfg.page_size,
            "sort": "ASC",
        }
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

    def count(self, start_time: str, org: str = DEFAULT_ORG) -> int:
        """How many events from start_time on (POST /events/count, the same query body):
        the backlog ``di2siem status --online`` shows."""
        query = {"service": list(self.cfg.services), "start_time": start_time}
        body = json.dumps(query, separators=(",", ":")).encode()

        def attempt() -> int:
            response = self._query(body, self._headers(org), org, "/count")
            try:
                value = json.loads(response.content)["count"]
            except (ValueError, TypeError, KeyError):
                value = None
            if type(value) is not int or value < 0:
                raise RetryableError("JumpCloud sent a malformed /events/count answer")
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
