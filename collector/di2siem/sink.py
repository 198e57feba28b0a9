"""The SIEM side: one keep-alive session, retry classes, 413 split, oversize skip."""

from __future__ import annotations

import time
from typing import Callable

from .batching import Item, framing_for
from .config import SiemConfig
from .http import (
    FatalError,
    RetryPolicy,
    body_excerpt,
    make_session,
    send,
    transient_status_error,
)

SIDE = "SIEM"


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
            return FatalError(f"SIEM answered {status}: check {self._credential_keys()}{suffix}")
        if status == 400:
            return FatalError(
                f"SIEM answered 400: check siem.format ({self.cfg.format}) and siem.url{suffix}"
            )
        if status in (404, 405):
            return FatalError(f"SIEM answered {status}: check siem.url and siem.method{suffix}")
        transient = transient_status_error(status, response, f"SIEM answered {status}")
        if transient is not None:
            return transient
        return FatalError(f"SIEM answered {status}: check siem.url{suffix}")

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
        self.requests += 1
        try:
            response = self._send(body)
        finally:
            self._last_post = time.monotonic()
        status = response.status_code
        if 200 <= status < 300 or status == 413:
            return status
        raise self._status_error(status, response)

    def _post(self, body: bytes) -> int:
        return self.policy.run(lambda: self._post_once(body), "SIEM post", self.on_retry)

    # -- shipping ------------------------------------------------------------------------------
    def ship(
        self,
        items: list[Item],
        on_accepted: Callable[[list[Item]], None],
        on_oversize: Callable[[Item], None],
    ) -> None:
        """Deliver items in order. A 413 splits the batch in halves (in order); a single
        event the SIEM still refuses as too large is reported via on_oversize and skipped."""
        if not items:
            return
        status = self._post(self.framing.body(items))
        if status != 413:
            on_accepted(items)
            return
        if len(items) == 1:
            on_oversize(items[0])
            return
        mid = len(items) // 2
        self.ship(items[:mid], on_accepted, on_oversize)
        self.ship(items[mid:], on_accepted, on_oversize)

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
