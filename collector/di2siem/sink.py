"""The SIEM side: one keep-alive session, retry classes, 413 split, bounded resends.

Promises kept here:
- a 413 halves the batch (in order), since the SIEM's own limit may be lower than
  siem.max_batch_bytes; a single event within siem.max_batch_bytes that the SIEM still refuses
  is a SIEM-side failure (FatalError: the run stops, the cursor stays), never a skip. Only
  the pipeline skips events, and only those that alone exceed siem.max_batch_bytes;
- a POST that may have reached the SIEM but got no answer (connection dropped or timed out
  after the request was sent) is resent at most ``MAX_RESENDS`` times per batch and run, so a
  SIEM that keeps a batch and then drops the connection receives at most
  ``MAX_RESENDS + 1`` copies of it per run; every such resend is counted (``resent``).
"""

from __future__ import annotations

import json
import time
from typing import Callable

from .batching import Item, framing_for
from .config import SiemConfig
from .errors import FatalError, RetryableError, Side
from .transport.body import body_excerpt
from .transport.exchange import send
from .transport.retry import RetryPolicy, transient_status_error
from .transport.session import make_session

SIDE = Side.SIEM
MAX_RESENDS = 2


def maybe_delivered(exc: BaseException) -> bool:
    """Could a POST that failed with ``exc`` (a RetryableError raised by http.send) have
    reached the SIEM? False only when no connection was made (refused, DNS, connect timeout)."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    cause = exc.__context__  # http.send raises ``from None``: the context is still kept
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(cause, requests.exceptions.ConnectionError):
        reason = cause.args[0] if cause.args else None
        reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
        if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
            return False
    return True


def _refusal_in_success(status: int, response) -> str | None:
    """A 2xx that is not a full acceptance: 207 (multi-status: part of the batch may have
    been refused), or a JSON object body that reports an error (``"error"`` or ``"errors"``
    set, or ``"success": false``, as Elasticsearch-like intakes answer). Other 2xx bodies are
    not interpreted: Coralogix documents 2xx as acceptance."""
    if status == 207:
        return "207 is a multi-status answer (some records may have been refused)"
    content = bytes(response.content).strip()
    if not content.startswith(b"{"):
        return None
    try:
        data = json.loads(content)
    except ValueError:
        return None
    if isinstance(data, dict) and (
        data.get("error") or data.get("errors") or data.get("success") is False
    ):
        return f"its body reports an error ({body_excerpt(response)})"
    return None


class Sink:
    def __init__(
        self,
        cfg: SiemConfig,
        policy: RetryPolicy,
        on_retry=None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.policy = policy
        self.on_retry = on_retry
        self.sleep = sleep
        self.framing = framing_for(cfg.format)
        headers = {"Content-Type": cfg.content_type}
        if cfg.format == "coralogix":
            headers["Content-Type"] = "application/json"
        for name, value in cfg.headers:
            headers[name] = value
        if cfg.api_key and cfg.format == "coralogix":
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        self.session = make_session(cfg.ca_bundle, headers)
        self.delay_s = cfg.batch_delay_milliseconds / 1000.0
        self._last_post = 0.0
        self.requests = 0
        self.resent = 0  # POSTs repeated after an attempt that may have been delivered
        self._unanswered = 0  # such attempts for the batch being posted

    def close(self) -> None:
        self.session.close()

    # -- classification ------------------------------------------------------------------------
    def _credential_keys(self) -> str:
        keys = []
        if self.cfg.api_key:
            keys.append("siem.api_key")
        keys.extend(f"siem.headers.{name}" for name, _ in self.cfg.headers)
        return " / ".join(keys) or "siem.api_key or siem.headers"

    def _status_error(self, status: int, response) -> Exception:
        detail = body_excerpt(response)
        suffix = f" ({detail})" if detail else ""
        if status in (401, 403):
            return FatalError(
                f"SIEM answered {status}: check {self._credential_keys()}{suffix}", side=SIDE
            )
        if status == 400:
            return FatalError(
                f"SIEM answered 400: check siem.format ({self.cfg.format}) and siem.url{suffix}",
                side=SIDE,
            )
        if status in (404, 405):
            return FatalError(
                f"SIEM answered {status}: check siem.url and siem.method{suffix}", side=SIDE
            )
        transient = transient_status_error(status, response, f"SIEM answered {status}", SIDE)
        if transient is not None:
            return transient
        return FatalError(f"SIEM answered {status}: check siem.url{suffix}", side=SIDE)

    def _send(self, body: bytes):
        return send(
            self.session,
            self.cfg.method,
            self.cfg.url,
            data=body,
            headers=None,
            timeout=self.cfg.timeout_seconds,
            side=SIDE,
            url_key="siem.url",
            deadline=self.policy.exchange_deadline,
        )

    def _post_once(self, body: bytes) -> int:
        """One POST; returns 2xx or 413, raises otherwise."""
        if self.delay_s and self._last_post:
            wait = self._last_post + self.delay_s - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        if self._unanswered:
            if self._unanswered > MAX_RESENDS:
                raise FatalError(
                    f"SIEM dropped the connection without answering {self._unanswered} times "
                    f"after a {len(body)}-byte batch was sent, so it may hold "
                    f"{self._unanswered} copies; stopping here rather than sending more (the "
                    "next run resends it): check the SIEM and siem.timeout_seconds",
                    side=SIDE,
                )
            self.resent += 1
        self.requests += 1
        try:
            response = self._send(body)
        except RetryableError as exc:
            if maybe_delivered(exc):
                self._unanswered += 1
            raise
        finally:
            self._last_post = time.monotonic()
        status = response.status_code
        if 200 <= status < 300:
            refusal = _refusal_in_success(status, response)
            if refusal:
                raise FatalError(
                    f"SIEM answered {status} but {refusal}: the batch is not counted as "
                    "delivered (the next run sends it again); check siem.url and the intake",
                    side=SIDE,
                )
            return status
        if status == 413:
            return status
        raise self._status_error(status, response)

    def _post(self, body: bytes) -> int:
        self._unanswered = 0
        return self.policy.run(lambda: self._post_once(body), "SIEM post", self.on_retry)

    # -- shipping ------------------------------------------------------------------------------
    def ship(self, items: list[Item], on_accepted: Callable[[list[Item]], None]) -> None:
        """Deliver items in order. A 413 splits the batch in halves (in order); a single
        event the SIEM still refuses is a SIEM-side failure (every item here fits
        siem.max_batch_bytes: the pipeline skips the ones that do not)."""
        if not items:
            return
        body = self.framing.body(items)
        status = self._post(body)
        if status != 413:
            on_accepted(items)
            return
        if len(items) == 1:
            raise FatalError(
                f"SIEM answered 413 for a {len(body)}-byte batch of one event, below "
                f"siem.max_batch_bytes={self.cfg.max_batch_bytes}: lower siem.max_batch_bytes "
                "to the SIEM's limit or check the SIEM (nothing was skipped; the next run "
                "resends it)",
                side=SIDE,
            )
        del body
        mid = len(items) // 2
        self.ship(items[:mid], on_accepted)
        self.ship(items[mid:], on_accepted)

    def probe(self) -> int:
        """Prove URL and credentials without shipping an event: POST an empty body
        (``[]`` for array formats, nothing for JSON Lines). Returns the HTTP status.
        2xx means accepted; 400/413 mean reachable and authenticated but the empty request
        was refused, which still proves the credentials (authentication comes first)."""
        body = b"" if self.framing.head == b"" else b"[]"

        def attempt() -> int:
            response = self._send(body)
            status = response.status_code
            if 200 <= status < 300 or status in (400, 413, 422):
                return status
            raise self._status_error(status, response)

        return self.policy.run(attempt, "SIEM probe", self.on_retry)
