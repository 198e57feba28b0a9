"""transport/causes.py and the retry policy's quick attempts for a failure to connect."""

from __future__ import annotations

import socket

import pytest

from di2siem.errors import NoConnection, RetryableError, Side, Unreachable
from di2siem.transport.causes import clean, describe, endpoint, not_connected
from di2siem.transport.retry import NO_CONNECTION_WAITS_S, RetryPolicy


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("https://u:secret@api.jumpcloud.com/insights?key=secret", "api.jumpcloud.com:443"),
        ("http://127.0.0.1:9/logs/datastream", "127.0.0.1:9"),
        ("https://[::1]:8443/x", "[::1]:8443"),
        ("tls://syslog.example", "syslog.example:6514"),
        ("http://host:99999/", "(an invalid URL)"),
    ],
)
def test_endpoint_is_host_and_port_alone(url: str, where: str) -> None:
    assert endpoint(url) == where


def test_a_library_message_is_cleaned_of_classes_addresses_and_its_retries() -> None:
    text = (
        "HTTPSConnectionPool(host='h', port=443): Max retries exceeded with url: /p?k=secret "
        "(Caused by ProxyError('Unable to connect to proxy', "
        "<urllib3.connection.HTTPSConnection object at 0x7f00deadbeef>: odd failure))"
    )
    cleaned = clean(text)
    for noise in ("Pool(", "Max retries", "secret", "object at 0x"):
        assert noise not in cleaned, cleaned
    assert "odd failure" in cleaned


def test_a_temporary_dns_failure_is_still_a_name_that_does_not_resolve() -> None:
    failure = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert describe(failure).startswith("name does not resolve (")
    assert not_connected(failure)


def test_a_wrapped_refusal_is_found_and_a_timeout_is_not_a_refusal() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise RuntimeError("Wrapper(host='x'): failed") from inner
    except RuntimeError as outer:
        assert describe(outer) == "connection refused" and not_connected(outer)
    assert not not_connected(TimeoutError("timed out"))


def test_no_connection_gets_quick_attempts_then_gives_up() -> None:
    slept: list[float] = []
    policy = RetryPolicy(5, base_delay=1.0, max_delay=60.0, sleep=slept.append)

    def refused() -> None:
        raise NoConnection("SIEM 127.0.0.1:9: connection refused", side=Side.SIEM)

    with pytest.raises(Unreachable, match="gave up after 3 attempts; no connection"):
        policy.run(refused, "SIEM post")
    assert slept == list(NO_CONNECTION_WAITS_S)


def test_quick_attempts_count_refusals_in_a_row_within_max_retries() -> None:
    slept: list[float] = []
    policy = RetryPolicy(3, base_delay=0.1, max_delay=1.0, sleep=slept.append)
    refusal = NoConnection("SIEM 127.0.0.1:9: connection refused", side=Side.SIEM)
    failures = iter(
        [refusal, RetryableError("SIEM answered 503", 2.0, side=Side.SIEM)] + [refusal] * 2
    )

    def attempt() -> None:
        raise next(failures)

    with pytest.raises(Unreachable, match="gave up after 4 attempts; no connection"):
        policy.run(attempt, "SIEM post")
    assert slept == [NO_CONNECTION_WAITS_S[0], 1.0, NO_CONNECTION_WAITS_S[0]]
