"""Dead man's switch (config key ``heartbeat_url``, a secret): after every run, a GET of the
URL on success, of the URL + ``/fail`` on failure (healthchecks.io's convention).

One short attempt, no redirects (transport.exchange.send); a heartbeat that cannot be delivered
is logged and never fails the run nor touches the state. The ping ends by ``min(now + TIMEOUT_S, run
deadline + BUDGET_GRACE_S)``, connect, headers and body included, so however the endpoint
behaves the process still exits within ``run_time_budget_seconds + 5 s`` of the run's start.
"""

from __future__ import annotations

import threading
import time

from ..errors import FatalError, RetryableError, Side
from ..transport.exchange import BUDGET_GRACE_S, Answer, send
from ..transport.session import make_session

TIMEOUT_S = 5.0  # a healthchecks-style endpoint answers in well under a second
# The exchange runs in a thread of its own, cut by send() this long before the ping's end;
# the caller waits until the end only, so what the socket deadline cannot cut (a name lookup
# that hangs) is left behind and the process exits anyway.
_JOIN_MARGIN_S = 0.2


def ping_url(url: str, ok: bool) -> str:
    return url if ok else url.rstrip("/") + "/fail"


def ping(
    url: str, ok: bool, log, ca_bundle: str | None = None, run_deadline: float | None = None
) -> bool:
    """GET the success or failure URL; True when it answered 2xx. Never raises.

    ``run_deadline``: the run's time budget end (time.monotonic); the ping never outlives it
    by more than BUDGET_GRACE_S. None: the run had not started its clock (TIMEOUT_S only).
    """
    outcome = "fail" if not ok else "success"
    ends = time.monotonic() + TIMEOUT_S
    if run_deadline is not None:
        ends = min(ends, run_deadline + BUDGET_GRACE_S)
    left = ends - time.monotonic()
    if left <= 0:
        log.warning(
            "heartbeat not delivered: run_time_budget_seconds (+"
            f"{BUDGET_GRACE_S:g}s grace) was used up by the run; the next run pings",
            heartbeat=outcome,
        )
        return False
    result: list[Answer | BaseException] = []
    cut_after = int(max(left - _JOIN_MARGIN_S, left / 2) * 10) / 10 or left / 2
    worker = threading.Thread(
        target=_exchange, args=(ping_url(url, ok), ca_bundle, cut_after, result), daemon=True
    )
    worker.start()
    worker.join(max(0.0, ends - time.monotonic()))
    if not result:
        log.warning(
            f"heartbeat not delivered: heartbeat_url did not answer within {left:.1f}s",
            heartbeat=outcome,
        )
        return False
    answer = result[0]
    if isinstance(answer, (FatalError, RetryableError)):
        log.warning(f"heartbeat not delivered: {answer}", heartbeat=outcome)
        return False
    if isinstance(answer, BaseException):  # whatever happens, the run's outcome stands
        log.warning(f"heartbeat not delivered: {type(answer).__name__}: {answer}")
        return False
    if not 200 <= answer.status_code < 300:
        log.warning(
            "heartbeat not delivered: heartbeat_url answered " + str(answer.status_code),
            heartbeat=outcome,
        )
        return False
    log.debug("heartbeat delivered", heartbeat=outcome)
    return True


def _exchange(
    target: str, ca_bundle: str | None, cut_after: float, result: list[Answer | BaseException]
) -> None:
    try:
        session = make_session(ca_bundle)
        try:
            # send() cuts the whole exchange (connect, headers, body) after cut_after seconds
            answer: Answer | BaseException = send(
                session,
                "GET",
                target,
                data=None,
                headers=None,
                timeout=cut_after,
                side=Side.HEARTBEAT,
                url_key="heartbeat_url",
                name_redirect=False,
            )
        finally:
            session.close()
    except BaseException as exc:  # reported by ping(), in the caller's thread
        answer = exc
    result.append(answer)
