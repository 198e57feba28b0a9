"""Dead man's switch (config key ``heartbeat_url``, a secret): after every run, a GET of the
URL on success, of the URL + ``/fail`` on failure (healthchecks.io's convention).

One short attempt, no redirects (http.send); a heartbeat that cannot be delivered is logged
and never fails the run nor touches the state.
"""

from __future__ import annotations

from .http import FatalError, RetryableError, make_session, send

TIMEOUT_S = 10.0
SIDE = "heartbeat"


def ping_url(url: str, ok: bool) -> str:
    return url if ok else url.rstrip("/") + "/fail"


def ping(url: str, ok: bool, log, ca_bundle: str | None = None) -> bool:
    """GET the success or failure URL; True when it answered 2xx. Never raises."""
    target = ping_url(url, ok)
    session = make_session(ca_bundle)
    try:
        answer = send(
            session,
            "GET",
            target,
            data=None,
            headers=None,
            timeout=TIMEOUT_S,
            side=SIDE,
            url_key="heartbeat_url",
        )
    except (FatalError, RetryableError) as exc:
        log.warning(f"heartbeat not delivered: {exc}", heartbeat="fail" if not ok else "success")
        return False
    except Exception as exc:  # whatever happens, the run's outcome stands
        log.warning(f"heartbeat not delivered: {type(exc).__name__}: {exc}")
        return False
    finally:
        session.close()
    if not 200 <= answer.status_code < 300:
        log.warning(
            "heartbeat not delivered: heartbeat_url answered " + str(answer.status_code),
            heartbeat="fail" if not ok else "success",
        )
        return False
    log.debug("heartbeat delivered", heartbeat="fail" if not ok else "success")
    return True
