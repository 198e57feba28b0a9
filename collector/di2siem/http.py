"""HTTP plumbing shared by both sides: sessions, TLS rules, retries with backoff.

``requests`` is imported lazily so ``di2siem --version``, ``check --offline`` and config
errors do not pay for it. TLS verification is always on (optionally against a CA bundle);
proxies come from the standard environment variables, as requests does by default.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Any, Callable

from . import __version__

USER_AGENT = f"di2siem/{__version__}"


class FatalError(Exception):
    """Not worth retrying (bad key, bad request, TLS failure); the message names the key."""


class RetryableError(Exception):
    """A transient failure: 429, 5xx, connection errors, timeouts, malformed answers."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GaveUpError(Exception):
    """Retries exhausted."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def transient_status_error(status: int, response, message: str) -> RetryableError | None:
    """408, 429 and 5xx are worth retrying (honouring Retry-After); None for the others."""
    if status in (408, 429) or status >= 500:
        return RetryableError(message, parse_retry_after(response.headers.get("Retry-After")))
    return None


class RetryPolicy:
    """Exponential backoff with full jitter; Retry-After wins when present (capped)."""

    def __init__(
        self,
        max_retries: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = rng or random.Random()
        # the run's time budget (clock() value): no wait may end past it
        self.deadline = deadline
        self.clock = clock
        self.retries = 0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def run(self, attempt_fn: Callable[[], Any], what: str, on_retry=None) -> Any:
        """Call attempt_fn until it returns; retry RetryableError; FatalError passes through."""
        attempt = 0
        while True:
            try:
                return attempt_fn()
            except RetryableError as exc:
                if attempt >= self.max_retries:
                    raise GaveUpError(
                        f"{what}: {exc} (gave up after {attempt + 1} attempts)"
                    ) from None
                wait = self.delay(attempt, exc.retry_after)
                if self.deadline is not None and self.clock() + wait > self.deadline:
                    raise GaveUpError(
                        f"{what}: {exc} (the next attempt, in {wait:.1f}s, would pass "
                        "run_time_budget_seconds; the next run resumes)"
                    ) from None
                if on_retry is not None:
                    on_retry(what, str(exc), attempt + 1, wait)
                self.retries += 1
                attempt += 1
                self.sleep(wait)


def make_session(ca_bundle: str | None, headers: dict[str, str] | None = None):
    import requests

    session = requests.Session()
    session.verify = ca_bundle if ca_bundle else True
    session.headers["User-Agent"] = USER_AGENT
    if headers:
        session.headers.update(headers)
    return session


def send(
    session,
    method: str,
    url: str,
    *,
    data: Any,
    headers: Any,
    timeout: float,
    side: str,
    stream: bool = False,
):
    """One HTTP exchange; transport problems become RetryableError / FatalError."""
    import requests

    try:
        return session.request(
            method, url, data=data, headers=headers, timeout=timeout, stream=stream
        )
    except requests.exceptions.SSLError as exc:
        key = "jumpcloud.ca_bundle" if side == "JumpCloud" else "siem.ca_bundle"
        raise FatalError(
            f"{side} TLS verification failed ({_short(exc)}): check the URL or set {key}"
        ) from None
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
        raise FatalError(f"{side} URL is invalid: {_short(exc)}") from None
    except requests.exceptions.Timeout:
        raise RetryableError(f"{side} timed out after {timeout:g}s") from None
    except requests.exceptions.RequestException as exc:
        raise RetryableError(f"{side} connection failed: {_short(exc)}") from None


def read_body(response, side: str) -> bytes:
    """The whole body of a ``stream=True`` response in one read.

    One large read lets the socket hand over big chunks: requests' own ``.content`` reads
    10 KB at a time, and every small read has to win the GIL back from the busy threads.
    """
    try:
        data = response.raw.read(decode_content=True)
    except Exception as exc:  # urllib3 timeouts, protocol errors, resets
        response.close()
        raise RetryableError(f"{side} answer could not be read ({_short(exc)})") from None
    expected = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding")
    if expected and expected.isdigit() and not encoded and int(expected) != len(data):
        response.close()
        raise RetryableError(f"{side} answer was cut short")
    return data


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body_excerpt(response, limit: int = 200) -> str:
    try:
        text = response.content[:limit].decode("utf-8", "replace")
    except Exception:
        return ""
    return " ".join(text.split())
