"""Delivery to any intake: one keep-alive session, 413 split, retries, bounded resends, and
each batch recorded once the intake took it, in submission order.

Promises kept here, for every intake:
- a SPLIT answer (413) halves the batch (in order), since the intake's own limit may be lower
  than siem.max_batch_bytes; a single event within siem.max_batch_bytes that the intake still
  refuses is an intake-side failure (FatalError: the run stops, the cursor stays), never a
  skip. Only the stream skips events, and only those that alone exceed siem.max_batch_bytes;
- a RETRY answer, a timeout or a dropped connection is retried by the run's retry policy,
  never past the run's deadline;
- a POST that may have reached the intake but got no answer (connection dropped or timed out
  after the request was sent) is resent at most ``MAX_RESENDS`` times per batch and run, so an
  intake that keeps a batch and then drops the connection receives at most
  ``MAX_RESENDS + 1`` copies of it per run; every such resend is counted (``resent``).

An intake that does not speak HTTP brings its own exchange (``Intake.transport()``, e.g.
syslog over TCP/TLS): each attempt goes through it instead of the HTTP request and
``classify``; it says itself whether a failed attempt may have reached the intake. Everything
above holds for it unchanged.
"""

from __future__ import annotations

import time
from typing import Callable

from ..batching import Item
from ..errors import FatalError, RetryableError, Side
from ..transport.exchange import send
from ..transport.retry import RetryPolicy
from ..transport.session import make_session
from .base import Intake, Outcome, Verdict

SIDE = Side.SIEM
MAX_RESENDS = 2


def maybe_delivered(exc: BaseException) -> bool:
    """Could a POST that failed with ``exc`` (a RetryableError raised by transport.send) have
    reached the intake? False only when no connection was made (refused, DNS, connect
    timeout)."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    cause = exc.__context__  # send raises ``from None``: the context is still kept
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(cause, requests.exceptions.ConnectionError):
        reason = cause.args[0] if cause.args else None
        reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
        if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
            return False
    return True


def probe_line(status: int | str, url: str) -> str:
    """What ``di2siem check`` says of a probe that passed: the HTTP status of the empty
    request, or (a str) what an intake's own transport proved, in its own words."""
    if isinstance(status, str):
        return status
    note = "" if 200 <= status < 300 else f" (empty request refused with {status}, expected)"
    return f"{url} reachable, credentials accepted, nothing shipped{note}"


class BatchDelivery:
    """Posts batches to one intake and hands each one it took to ``on_accepted``."""

    def __init__(
        self,
        intake: Intake,
        policy: RetryPolicy,
        on_retry=None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.intake = intake
        self.cfg = cfg = intake.cfg
        self.framing = intake.framing
        self.policy = policy
        self.on_retry = on_retry
        self.sleep = sleep
        self.session = make_session(cfg.ca_bundle, intake.headers())
        self.transport = intake.transport()  # None: HTTP through self.session
        self.delay_s = cfg.batch_delay_milliseconds / 1000.0
        self._last_post = 0.0
        self.requests = 0
        self.resent = 0  # POSTs repeated after an attempt that may have been delivered
        self._unanswered = 0  # such attempts for the batch being posted
        self._unconfirmed_cause = ""  # why the last of them failed
        self.partial: Outcome | None = None  # the last PARTIAL answer

    def close(self) -> None:
        self.session.close()
        if self.transport is not None:
            self.transport.close()

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

    def _post_once(self, body: bytes) -> Verdict:
        """One POST; returns DELIVERED or SPLIT, raises for the other outcomes."""
        if self.delay_s and self._last_post:
            wait = self._last_post + self.delay_s - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        if self._unanswered:
            if self._unanswered > MAX_RESENDS:
                raise FatalError(self._unconfirmed(len(body)), side=SIDE)
            self.resent += 1
        self.requests += 1
        try:
            outcome = self._exchange(body)
        except RetryableError as exc:
            if self._maybe_delivered(exc):
                self._unanswered += 1
                self._unconfirmed_cause = str(exc)
            raise
        finally:
            self._last_post = time.monotonic()
        verdict = outcome.verdict
        if verdict is Verdict.RETRY:
            raise RetryableError(outcome.reason, outcome.retry_after, side=SIDE)
        if verdict is Verdict.REFUSED:
            raise FatalError(outcome.reason, side=SIDE)
        if verdict is Verdict.PARTIAL:
            self.partial = outcome
        return verdict

    def _unconfirmed(self, size: int) -> str:
        """Why the resend cap stops the run; an intake's own transport may have failed
        otherwise than by a dropped connection (a receiver that stopped reading)."""
        times = self._unanswered
        stop = (
            "stopping here rather than sending more (the next run resends it): check the SIEM "
            "and siem.timeout_seconds"
        )
        if self.transport is None:
            return (
                f"SIEM dropped the connection without answering {times} times after a "
                f"{size}-byte batch was sent, so it may hold {times} copies; {stop}"
            )
        return (
            f"SIEM did not confirm a {size}-byte batch {times} times (last: "
            f"{self._unconfirmed_cause}), so it may hold {times} copies; {stop}"
        )

    def _exchange(self, body: bytes) -> Outcome:
        """One attempt: through the intake's own transport if it has one, else one HTTP
        request read by the intake's ``classify``."""
        if self.transport is not None:
            return self.transport.send(body, self.policy.exchange_deadline)
        response = self._send(body)
        return self.intake.classify(response.status_code, response)

    def _maybe_delivered(self, exc: BaseException) -> bool:
        if self.transport is not None:
            return self.transport.maybe_delivered(exc)
        return maybe_delivered(exc)

    def _post(self, body: bytes) -> Verdict:
        self._unanswered = 0
        return self.policy.run(lambda: self._post_once(body), "SIEM post", self.on_retry)

    def ship(self, items: list[Item], on_accepted: Callable[[list[Item]], None]) -> None:
        """Deliver items in order. A SPLIT halves the batch (in order); a single event the
        intake still refuses as too large is an intake-side failure (every item here fits
        siem.max_batch_bytes: the stream skips the ones that do not)."""
        if not items:
            return
        body = self.framing.body(items)
        verdict = self._post(body)
        if verdict is Verdict.DELIVERED:
            on_accepted(items)
            return
        if verdict is Verdict.PARTIAL:
            on_accepted(items)  # sending them again is what the intake forbids
            raise FatalError(self.partial.reason, side=SIDE)
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
        """Prove URL and credentials without shipping an event (the intake's probe request).
        Returns the HTTP status (or what the intake's own transport says it proved)."""
        if self.transport is not None:
            return self._probe_transport()
        intake = self.intake
        body = intake.probe_body()

        def attempt() -> int:
            response = self._send(body)
            status = response.status_code
            if intake.probe_accepts(status):
                return status
            outcome = intake.refusal(status, response)
            if outcome.verdict is Verdict.RETRY:
                raise RetryableError(outcome.reason, outcome.retry_after, side=SIDE)
            raise FatalError(outcome.reason, side=SIDE)

        return self.policy.run(attempt, "SIEM probe", self.on_retry)

    def _probe_transport(self) -> int | str:
        transport = self.transport
        assert transport is not None
        deadline = self.policy.exchange_deadline
        return self.policy.run(lambda: transport.probe(deadline), "SIEM probe", self.on_retry)
