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
from ..transport.body import body_excerpt
from ..transport.retry import parse_retry_after


class Verdict(Enum):
    DELIVERED = "delivered"  # the intake took the whole batch
    RETRY = "retry"  # a transient refusal: the same batch again, after a backoff
    SPLIT = "split"  # too large for the intake: each half on its own
    REFUSED = "refused"  # for good: the run stops, the cursor stays before the batch
    # taken, but the intake refused some records for good and must not get them again: the
    # batch is recorded, then the run stops naming the count
    PARTIAL = "partial"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    retry_after: float | None = None  # seconds the intake asked us to wait (RETRY)
    reason: str = ""  # one line for the operator (RETRY, REFUSED, PARTIAL)
    refused_count: int = 0  # PARTIAL: how many records the intake refused


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

    def transport(self) -> Transport | None:
        """The intake's own exchange; None (every HTTP intake): delivery.py's HTTP request,
        read by ``classify``."""
        return None

    def limits(self) -> Limits:
        return Limits(self.cfg.batch_size, self.cfg.max_batch_bytes)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.cfg.content_type}
        headers.update(self.cfg.headers)
        return headers

    def credential_keys(self) -> str:
        """The settings an operator checks when the intake refuses our credentials."""
        keys = ["siem.api_key"] if self.cfg.api_key else []
        keys.extend(f"siem.headers.{name}" for name, _ in self.cfg.headers)
        return " / ".join(keys) or "siem.api_key or siem.headers"

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
