"""The intake contract: what one SIEM intake knows, and nothing more.

An intake declares the ``siem`` options it reads, its limits, the request headers, how one
event is wrapped (its envelope) and how a batch's records are joined (its framing), and reads
the intake's answer to a batch as an Outcome. Everything else (posting, splitting, retries
within the run's deadline, the resend cap, recording in submission order) is done once, for
every intake, by delivery.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Protocol

from ..batching import Framing
from ..config import SiemConfig
from ..shaping import Envelope
from ..transport.body import MAX_ANSWER_BYTES, body_excerpt
from ..transport.retry import parse_retry_after


class Verdict(Enum):
    DELIVERED = "delivered"  # the intake took the whole batch
    RETRY = "retry"  # a transient refusal: the same batch again, after a backoff
    SPLIT = "split"  # too large for the intake: each half on its own
    REFUSED = "refused"  # for good: the run stops, the cursor stays before the batch
    # taken, but the intake refused some records for good and must not get them again: the
    # batch is recorded, then the run stops naming the count
    PARTIAL = "partial"
    # answered item by item (Elasticsearch _bulk): every item of the request has its answer;
    # those in Outcome.retry_items are sent again (alone), those in refused_items are refused
    # for good, the others are taken (delivery.py: BatchDelivery._settle_items)
    ITEMS = "items"
    # the request's short-lived credentials were refused (a 401 to an expired or revoked
    # token): the intake renews them (renew_credentials) and the same batch goes again at
    # once, one time per batch; a second such answer for the batch is a refusal
    REAUTH = "reauth"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    retry_after: float | None = None  # seconds the intake asked us to wait (RETRY)
    reason: str = ""  # one line for the operator (RETRY, REFUSED, PARTIAL)
    refused_count: int = 0  # PARTIAL: how many records the intake refused
    # ITEMS: how many item answers there are, and by their index in the request the items to
    # send again and the items refused for good (with the intake's reason)
    items_answered: int = 0
    retry_items: tuple[int, ...] = ()
    refused_items: tuple[tuple[int, str], ...] = ()
    # DELIVERED by an intake that acknowledges later (Intake.acknowledgement): the id to ask
    # about; the batch counts as delivered only once the intake says that id is done
    ack_id: int | None = None
    # REFUSED naming one record of the batch by its 0-based position: the reason's
    # "{event}" becomes that event's id (delivery.py)
    record_index: int | None = None


DELIVERED = Outcome(Verdict.DELIVERED)
SPLIT = Outcome(Verdict.SPLIT)


class Transport(Protocol):
    """An intake's own exchange, for an intake that does not speak HTTP (syslog over TCP/TLS):
    what delivery.py's HTTP request and ``classify`` are for the others. Splitting, retries,
    the resend cap and recording stay in delivery.py."""

    def send(self, body: bytes, deadline: float | None) -> Outcome:
        """Deliver one body, ending by ``deadline`` (time.monotonic, the run's; None: the
        timeout alone) plus transport.exchange.BUDGET_GRACE_S. Raises RetryableError (a
        dropped connection, a timeout), FatalError or BudgetExceeded like the HTTP exchange."""

    def maybe_delivered(self, exc: BaseException) -> bool:
        """Could the attempt that just raised ``exc`` have reached the intake (any of it)?"""

    def probe(self, deadline: float | None) -> int | str:
        """Prove the endpoint (and credentials) without shipping an event: a status, or the
        line ``di2siem check`` shows."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class AckSettings:
    """How an intake that acknowledges batches later is waited for (delivery.py, acks.py)."""

    channel: str  # this sink's channel: every request carries it, ack ids are per channel
    timeout_s: float  # still unacknowledged this long after it was sent: sent again
    poll_s: float  # how often the acknowledgements are asked for
    max_pending: int  # at most this many batches wait for their acknowledgement at once
    ledger_name: str  # the file in state_dir where waiting batches outlive the run


@dataclass(frozen=True)
class Limits:
    max_events: int  # per request
    max_bytes: int  # body bytes per request


class Intake:
    """One SIEM intake. Subclasses set the class attributes and may override any method."""

    name: ClassVar[str]
    # the siem.* options this intake reads (declared, checked and documented in config/siem.py
    # with every other setting, so that ``check --offline`` knows them without an intake)
    options: ClassVar[tuple[str, ...]]
    framing: Framing
    envelope: Envelope | None = None  # None: the shaped event is the record

    def __init__(self, cfg: SiemConfig) -> None:
        self.cfg = cfg

    def acknowledgement(self) -> AckSettings | None:
        """None: an intake's DELIVERED answer is final (every intake but Splunk HEC with
        ack). Otherwise a DELIVERED outcome carries an ack_id that ack_query asks about."""
        return None

    def ack_query(self, channel: str, ack_ids: list[int]) -> tuple[str, bytes, dict[str, str]]:
        """(URL, body, extra headers) of the request asking about ``ack_ids`` on ``channel``."""
        raise NotImplementedError

    def ack_answer(self, status: int, response) -> dict[int, bool]:
        """The acknowledgements in the answer to ack_query; raises RetryableError or
        FatalError (side SIEM) for an answer that is not one."""
        raise NotImplementedError

    def transport(self) -> Transport | None:
        """The intake's own exchange; None (every HTTP intake): delivery.py's HTTP request,
        read by ``classify``."""
        return None

    def limits(self) -> Limits:
        return Limits(self.cfg.batch_size, self.cfg.max_batch_bytes)

    def answer_limit(self) -> int:
        """At most this many bytes of a 2xx answer are read (the rest is cut): an intake that
        answers item by item needs room for every item of a batch."""
        return MAX_ANSWER_BYTES

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.cfg.content_type}
        headers.update(self.cfg.headers)
        return headers

    def request_headers(self, deadline: float | None) -> dict[str, str] | None:
        """Headers of one request on top of the session's (headers()), fetched per POST:
        short-lived credentials such as an OAuth bearer token, obtained or refreshed here
        (within ``deadline``, the run's, on time.monotonic). None: the session's only. A
        RetryableError or FatalError raised here is the request's, before it was sent."""
        return None

    def renew_credentials(self) -> None:
        """After a REAUTH answer: the next request_headers() carries fresh credentials."""

    def credential_keys(self) -> str:
        """The settings an operator checks when the intake refuses our credentials."""
        keys = ["siem.api_key"] if self.cfg.api_key else []
        keys.extend(f"siem.headers.{name}" for name, _ in self.cfg.headers)
        return " / ".join(keys) or "siem.api_key or siem.headers"

    def post_url(self) -> str:
        """Where batches are posted."""
        return self.cfg.url

    def probe_url(self) -> str:
        return self.post_url()

    def probe_headers(self) -> dict[str, str] | None:
        """Headers of the probe request that differ from the session's (None: none)."""
        return None

    def probe_refusal(self, response) -> str | None:
        """What an accepted probe answer still says against the credentials (None: nothing)."""
        return None

    def probe_body(self) -> bytes:
        """A request that proves the URL and the credentials without shipping an event: an
        empty batch."""
        return b"[]"

    def probe_accepts(self, status: int) -> bool:
        """2xx accepted it; 400/413/422 refused the empty request after authenticating it
        (authentication comes first), which still proves the credentials."""
        return 200 <= status < 300 or status in (400, 413, 422)

    def classify(self, status: int, response) -> Outcome:
        """The answer to one batch: 2xx delivered unless it reports a refusal, 413 split,
        408/429/5xx retried (honouring Retry-After), anything else refused."""
        if 200 <= status < 300:
            refusal = refusal_in_success(status, response)
            if refusal is None:
                return DELIVERED
            return refused(
                f"SIEM answered {status} but {refusal}: the batch is not counted as "
                "delivered (the next run sends it again); check siem.url and the intake"
            )
        if status == 413:
            return SPLIT
        return self.refusal(status, response)

    def refusal(self, status: int, response) -> Outcome:
        """A non-2xx answer other than 413."""
        detail = body_excerpt(response)
        suffix = f" ({detail})" if detail else ""
        if status in (401, 403):
            return refused(f"SIEM answered {status}: check {self.credential_keys()}{suffix}")
        if status == 400:
            return refused(
                f"SIEM answered 400: check siem.format ({self.cfg.format}) and siem.url{suffix}"
            )
        if status in (404, 405):
            return refused(f"SIEM answered {status}: check siem.url and siem.method{suffix}")
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return Outcome(Verdict.RETRY, retry_after, f"SIEM answered {status}")
        return refused(f"SIEM answered {status}: check siem.url{suffix}")


def refused(reason: str) -> Outcome:
    return Outcome(Verdict.REFUSED, reason=reason)


def refusal_in_success(status: int, response) -> str | None:
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
