"""Delivery to any intake: one keep-alive session, 413 split, retries, bounded resends, and
each batch recorded once the intake took it, in submission order.

Promises kept here, for every intake:
- a SPLIT answer (413) halves the batch (in order), since the intake's own limit may be lower
  than siem.max_batch_bytes; a single event within siem.max_batch_bytes that the intake still
  refuses is an intake-side failure (FatalError: the run stops, the cursor stays), never a
  skip. Only the stream skips events, and only those that alone exceed siem.max_batch_bytes;
- a RETRY answer, a timeout or a dropped connection is retried by the run's retry policy,
  never past the run's deadline;
- a REAUTH answer (the intake's short-lived credentials refused: a 401 to an expired token)
  renews them and sends the same batch again at once; a second REAUTH in a row is final.
  Credentials that change per request come from Intake.request_headers, asked before each
  POST;
- a POST that may have reached the intake but got no answer (connection dropped or timed out
  after the request was sent) is resent at most ``MAX_RESENDS`` times per batch and run, so an
  intake that keeps a batch and then drops the connection receives at most
  ``MAX_RESENDS + 1`` copies of it per run; every such resend is counted (``resent``);
- an answer item by item (ITEMS) re-posts only the items the intake asked for again, with the
  same backoff and deadline, and records only what precedes the first item not taken; an item
  refused for good stops the run naming its event (_settle_items).
- an intake that acknowledges later (Intake.acknowledgement: a DELIVERED outcome with an
  ack_id) has its batches recorded only once acknowledged, in submission order, at most
  ``max_pending`` waiting at once (acks.py: AckWaiter); ``settle`` waits for the last ones.

An intake that does not speak HTTP brings its own exchange (``Intake.transport()``, e.g.
syslog over TCP/TLS): each attempt goes through it instead of the HTTP request and
``classify``; it says itself whether a failed attempt may have reached the intake. Everything
above holds for it unchanged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from ..batching import Item
from ..errors import FatalError, RetryableError, Side
from ..transport.exchange import send
from ..transport.retry import RetryPolicy
from ..transport.session import make_session
from .base import DELIVERED, Intake, Outcome, Verdict
from .items import ItemLedger

if TYPE_CHECKING:
    from ..state.acks import AckLedger
    from .acks import AckWaiter

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
        ledger: AckLedger | None = None,
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
        self.url = intake.post_url()
        self._reauthed = False  # the last answer was REAUTH and the credentials were renewed
        self.outcome: Outcome = DELIVERED  # the last answer
        self.acks = self._ack_waiter(ledger)
        self._posting: list[Item] = []  # the batch being posted
        self._unconfirmed_cause = ""  # why the last of them failed

    def close(self) -> None:
        self.session.close()
        if self.transport is not None:
            self.transport.close()

    def _send(self, body: bytes, url: str | None = None, headers=None, method: str = ""):
        return send(
            self.session,
            method or self.cfg.method,
            url or self.url,
            data=body,
            headers=headers,
            timeout=self.cfg.timeout_seconds,
            side=SIDE,
            url_key="siem.url",
            deadline=self.policy.exchange_deadline,
            limit=self.intake.answer_limit(),
        )

    def _post_once(self, body: bytes) -> Verdict:
        """One POST; returns DELIVERED or SPLIT, raises for the other outcomes."""
        if self.delay_s and self._last_post:
            wait = self._last_post + self.delay_s - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        headers = self._request_headers()
        if self._unanswered:
            if self._unanswered > MAX_RESENDS:
                raise FatalError(self._unconfirmed(len(body)), side=SIDE)
            self.resent += 1
        self.requests += 1
        try:
            outcome = self.outcome = self._exchange(body, headers)
        except RetryableError as exc:
            if self._maybe_delivered(exc):
                self._unanswered += 1
                self._unconfirmed_cause = str(exc)
            raise
        finally:
            self._last_post = time.monotonic()
        verdict = outcome.verdict
        if verdict is Verdict.REAUTH:
            return self._renewed(body, outcome)
        self._reauthed = False
        if verdict is Verdict.RETRY:
            raise RetryableError(outcome.reason, outcome.retry_after, side=SIDE)
        if verdict is Verdict.REFUSED:
            raise FatalError(self._named(outcome), side=SIDE)
        return verdict

    def _request_headers(self) -> dict[str, str] | None:
        """The intake's per-request headers (a fresh token when due), asked before the POST
        is sent: a failure here is the token's, never a POST that may have been delivered."""
        return self.intake.request_headers(self.policy.exchange_deadline)

    def _renewed(self, body: bytes, outcome: Outcome) -> Verdict:
        """A REAUTH answer: the intake renews its credentials and the batch goes again at
        once (the answer proves it was not taken, so this is no resend), outside the retry
        policy; a second REAUTH in a row means fresh credentials are refused too: final."""
        if self._reauthed:
            self._reauthed = False
            raise FatalError(outcome.reason, side=SIDE)
        self._reauthed = True
        self.intake.renew_credentials()
        return self._post_once(body)

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

    def _exchange(self, body: bytes, headers: dict[str, str] | None) -> Outcome:
        """One attempt: through the intake's own transport if it has one, else one HTTP
        request read by the intake's ``classify``."""
        if self.transport is not None:
            return self.transport.send(body, self.policy.exchange_deadline)
        response = self._send(body, headers=headers)
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
        if self.acks is not None:
            items = self._unsent(items, on_accepted)
            if not items:
                return
        body = self.framing.body(items)
        self._posting = items
        verdict = self._post(body)
        if verdict is Verdict.DELIVERED:
            self._delivered(items, on_accepted)
            return
        if verdict is Verdict.PARTIAL:
            on_accepted(items)  # sending them again is what the intake forbids
            raise FatalError(self.outcome.reason, side=SIDE)
        if verdict is Verdict.ITEMS:
            del body
            self._settle_items(items, self.outcome, on_accepted)
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

    def _settle_items(
        self, items: list[Item], answer: Outcome, on_accepted: Callable[[list[Item]], None]
    ) -> None:
        """A batch answered item by item. The items the intake asked for again (and only
        they) are posted again, after the retry policy's backoff and never past the run's
        deadline, until every item before the first refused one is taken; then, also when
        that fails, what precedes the first item not taken is recorded in submission order.
        A refused item stops the run naming its event: the cursor stays before it, and the
        items after it are left to the next run (which sends them again)."""
        ledger = ItemLedger(len(items))
        sent = list(range(len(items)))
        ledger.read(sent, answer)
        first = True

        def attempt() -> None:
            nonlocal sent, first
            if not first:  # after the backoff: the items asked for again, alone
                verdict = self._post_once(self.framing.body([items[p] for p in sent]))
                if verdict is Verdict.DELIVERED:
                    ledger.take(sent)
                elif verdict is Verdict.ITEMS:
                    ledger.read(sent, self.outcome)
                else:
                    raise FatalError(
                        f"SIEM answered {verdict.value} to {len(sent)} item(s) sent again "
                        "(it took them in a larger batch before): check the SIEM",
                        side=SIDE,
                    )
            first = False
            sent = ledger.to_retry()
            if sent:
                raise RetryableError(ledger.reason, None, side=SIDE)

        self._unanswered = 0
        try:
            self.policy.run(attempt, "SIEM post (items to retry)", self.on_retry)
        finally:
            taken = ledger.taken_prefix()
            if taken:
                on_accepted(items[:taken])
        refusal = ledger.first_refused()
        if refusal is not None:
            position, reason = refusal
            raise FatalError(
                f"SIEM refused event {items[position].event_id}: {reason}; the run stops "
                "here and the cursor stays before it (the next run sends it again)",
                side=SIDE,
            )

    def _named(self, outcome: Outcome) -> str:
        """A refusal's reason with the event it names (Outcome.record_index) by its id."""
        index = outcome.record_index
        if index is None or "{event}" not in outcome.reason:
            return outcome.reason
        items = self._posting
        if 0 <= index < len(items):
            named = f"event {items[index].event_id or 'without id'}, #{index} of the batch"
        else:
            named = f"event #{index}, not in the batch of {len(items)}"
        return outcome.reason.replace("{event}", named)

    # -- intakes that acknowledge later (acks.py) --------------------------------------------------
    def _ack_waiter(self, ledger: AckLedger | None) -> AckWaiter | None:
        settings = self.intake.acknowledgement()
        if settings is None:
            return None
        from ..state.acks import AckLedger  # only intakes that acknowledge later
        from .acks import AckWaiter

        ledger = ledger if ledger is not None else AckLedger(None)
        return AckWaiter(settings, ledger, self.policy, self._ack_query, self._resend)

    def _delivered(self, items: list[Item], on_accepted: Callable[[list[Item]], None]) -> None:
        ack_id = self.outcome.ack_id
        if self.acks is None or ack_id is None:
            on_accepted(items)
        else:
            self.acks.sent(items, on_accepted, ack_id)

    def _unsent(self, items: list[Item], on_accepted: Callable[[list[Item]], None]) -> list[Item]:
        """Room made for one more waiting batch; the items an earlier run's acknowledged
        batch covered recorded (after every batch before them), the rest returned."""
        acks = self.acks
        acks.make_room()
        confirmed = acks.take_confirmed(items)
        if not confirmed:
            return items
        acks.settle()
        on_accepted(confirmed)
        acks.ledger.recorded([item[1] for item in confirmed])
        acks.recorded_unsent += len(confirmed)
        taken = {id(item) for item in confirmed}
        return [item for item in items if id(item) not in taken]

    def _resend(self, items: list[Item]) -> int:
        """A batch still unacknowledged after its timeout, sent again: its new ack id."""
        self.resent += 1
        self._posting = items
        verdict = self._post(self.framing.body(items))
        ack_id = self.outcome.ack_id
        if verdict is not Verdict.DELIVERED or ack_id is None:
            raise FatalError(
                "SIEM did not take again a batch it had not acknowledged in time "
                f"({self.outcome.reason or verdict.value}); the next run resends it",
                side=SIDE,
            )
        return ack_id

    def _ack_query(self, channel: str, ack_ids: list[int]) -> dict[int, bool]:
        url, body, headers = self.intake.ack_query(channel, ack_ids)
        self.requests += 1
        response = self._send(body, url, headers, "POST")
        return self.intake.ack_answer(response.status_code, response)

    def settle(self) -> None:
        """Every batch handed over is recorded (or BudgetReached leaves the ones still
        waiting for their acknowledgement to the next run)."""
        if self.acks is not None:
            self.acks.settle()

    def probe(self) -> int:
        """Prove URL and credentials without shipping an event (the intake's probe request).
        Returns the HTTP status (or what the intake's own transport says it proved)."""
        if self.transport is not None:
            return self._probe_transport()
        intake = self.intake
        body = intake.probe_body()
        url, headers = intake.probe_url(), intake.probe_headers()

        def attempt() -> int:
            extra = {**(self._request_headers() or {}), **(headers or {})}
            response = self._send(body, url, extra or None)
            status = response.status_code
            if intake.probe_accepts(status):
                refusal = intake.probe_refusal(response)
                if refusal:
                    raise FatalError(refusal, side=SIDE)
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
