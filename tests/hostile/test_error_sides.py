"""Every error knows which side failed (di2siem.errors): side_of reads that, never the text.

The raise sites are driven the way a run meets them: the JumpCloud client, the SIEM delivery and
the bare exchange against hostile peers of our own over loopback HTTP (tests/hostile.py), the
retry policy, the state store and an org's window.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import legacy_config
from di2siem.batching import Item
from di2siem.config import Config, parse
from di2siem.engine.context import OrgRun
from di2siem.engine.window import AHEAD_TOLERANCE_MS, refuse_ahead
from di2siem.errors import (
    BudgetExceeded,
    ConfigError,
    FatalError,
    GaveUpError,
    OrgRefused,
    PastDeadline,
    PositionAhead,
    RetryableError,
    Side,
    StateWriteError,
    side_of,
)
from di2siem.intakes import intake_for
from di2siem.intakes.delivery import BatchDelivery
from di2siem.log import Logger
from di2siem.scheduler.runrecord import error_line
from di2siem.source.client import JumpCloudClient
from di2siem.state.store import StateStore
from di2siem.timeutil import format_ms, now_ms
from di2siem.transport.exchange import send
from di2siem.transport.retry import RetryPolicy
from di2siem.transport.session import make_session
from hostile import Exchange, HostilePeer

START = format_ms(now_ms() - 60_000)


def no_sleep(_: float) -> None:
    pass


def config(peer: HostilePeer) -> Config:
    return parse(legacy_config(peer.url, peer.url), "/c.json")


def answering(status: int, body: Any = b"") -> HostilePeer:
    def behave(ex: Exchange) -> None:
        ex.reply(status, body)

    return HostilePeer(behave)


@pytest.fixture
def log() -> Logger:
    return Logger("info", io.StringIO())


def failure_of(fn) -> BaseException:
    with pytest.raises(Exception) as caught:
        fn()
    return caught.value


# -- side_of reads the attribute, never the message ------------------------------------------


@pytest.mark.parametrize(
    ("exc", "side"),
    [
        (FatalError("SIEM answered 401", side=Side.JUMPCLOUD), Side.JUMPCLOUD),
        (RetryableError("JumpCloud answered 503", side=Side.SIEM), Side.SIEM),
        (GaveUpError("SIEM post: JumpCloud gave up", side=Side.HEARTBEAT), Side.HEARTBEAT),
        (StateWriteError("SIEM: JumpCloud disk full"), Side.STATE),
        (PositionAhead("SIEM ahead of JumpCloud"), Side.STATE),
        (OrgRefused("SIEM refused"), Side.JUMPCLOUD),
        (ConfigError("siem.url", "JumpCloud is not a SIEM"), Side.DI2SIEM),
        (RuntimeError("SIEM answered 500 to JumpCloud"), Side.DI2SIEM),
        (OSError("JumpCloud"), Side.DI2SIEM),
    ],
)
def test_side_of_reads_the_side_never_the_text(exc: BaseException, side: str) -> None:
    assert side_of(exc) == side


def test_error_line_names_the_attribute_side_and_keeps_the_message() -> None:
    assert error_line(FatalError("SIEM answered 401", side=Side.JUMPCLOUD), str) == (
        "JumpCloud: SIEM answered 401"
    )
    # a message that already starts with its side is kept as it is
    assert error_line(FatalError("SIEM answered 401", side=Side.SIEM), str) == "SIEM answered 401"
    assert error_line(RuntimeError("JumpCloud went away"), str) == "di2siem: JumpCloud went away"


# -- the exchange: every failure carries the side it was given -------------------------------


@pytest.mark.parametrize("side", [Side.JUMPCLOUD, Side.SIEM, Side.HEARTBEAT])
def test_exchange_failures_carry_the_side_they_were_given(side: str) -> None:
    def redirect(ex: Exchange) -> None:
        ex.reply(302, b"", {"Location": "http://127.0.0.1:9/elsewhere"})

    def stall(ex: Exchange) -> None:
        ex.hold(limit_s=5)

    session = make_session(None)

    def get(peer: HostilePeer, timeout: float = 5, deadline: float | None = None) -> BaseException:
        return failure_of(
            lambda: send(
                session,
                "GET",
                peer.url,
                data=None,
                headers=None,
                timeout=timeout,
                side=side,
                url_key="siem.url",
                deadline=deadline,
            )
        )

    try:
        with HostilePeer(redirect) as peer:
            exc = get(peer)
        assert isinstance(exc, FatalError) and exc.side == side
        assert str(exc).startswith(f"{side} answered 302 redirecting to ")
        with HostilePeer(stall) as peer:
            exc = get(peer, timeout=0.3)
            assert isinstance(exc, RetryableError) and exc.side == side
            exc = get(peer, deadline=time.monotonic() - 10)
            assert isinstance(exc, BudgetExceeded) and exc.side == side
    finally:
        session.close()


# -- the retry policy: giving up keeps the side of the attempt that failed -------------------


@pytest.mark.parametrize("side", [Side.JUMPCLOUD, Side.SIEM])
def test_given_up_and_past_deadline_keep_the_attempts_side(side: str) -> None:
    def attempt() -> None:
        raise RetryableError("SIEM answered 503", retry_after=1.0, side=side)

    exc = failure_of(lambda: RetryPolicy(max_retries=1, sleep=no_sleep).run(attempt, "x"))
    assert type(exc) is GaveUpError and exc.side == side
    late = RetryPolicy(max_retries=5, sleep=no_sleep, deadline=time.monotonic())
    exc = failure_of(lambda: late.run(attempt, "x"))
    assert isinstance(exc, PastDeadline) and exc.side == side


# -- the JumpCloud client and the SIEM sink, over loopback HTTP ------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"message": "SIEM-looking text"}, FatalError),
        (402, b"", OrgRefused),
        (503, b"", GaveUpError),
        (200, b"SIEM: not json", GaveUpError),
    ],
)
def test_jumpcloud_client_failures_are_jumpclouds(status, body, kind, log: Logger) -> None:
    with answering(status, body) as peer:
        jc = JumpCloudClient(config(peer).jumpcloud, RetryPolicy(0, sleep=no_sleep), secrets=log)
        try:
            exc = failure_of(lambda: list(jc.pages(START)))
        finally:
            jc.close()
    assert type(exc) is kind and side_of(exc) == Side.JUMPCLOUD


@pytest.mark.parametrize(
    ("status", "kind"), [(401, FatalError), (503, GaveUpError), (207, FatalError)]
)
def test_sink_failures_are_the_siems(status: int, kind: type, log: Logger) -> None:
    with answering(status, {"errors": "JumpCloud-looking text"}) as peer:
        sink = BatchDelivery(
            intake_for(config(peer).siem), RetryPolicy(0, sleep=no_sleep), sleep=no_sleep
        )
        try:
            batch = [Item(b'{"id":"e1"}', "e1", now_ms())]
            exc = failure_of(lambda: sink.ship(batch, lambda accepted: None))
        finally:
            sink.close()
    assert type(exc) is kind and side_of(exc) == Side.SIEM


# -- the state: a write that fails, and a position ahead of JumpCloud's clock ----------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(str(tmp_path))
    store.load()
    yield store
    store.close()


def test_a_failed_state_write_is_the_states(store: StateStore, tmp_path: Path) -> None:
    store.org("o1").cursor_ms = now_ms()
    orgs = tmp_path / "orgs"
    for name in os.listdir(orgs):
        os.unlink(orgs / name)
    orgs.rmdir()
    orgs.write_text("not a directory")  # fails for root too
    exc = failure_of(lambda: store.save("o1"))
    assert isinstance(exc, StateWriteError) and side_of(exc) == Side.STATE


def test_a_position_ahead_of_jumpclouds_clock_is_the_states(store: StateStore) -> None:
    state = store.org("o1")
    now = now_ms()
    state.cursor_ms = now + AHEAD_TOLERANCE_MS + 60_000
    exc = failure_of(lambda: refuse_ahead(OrgRun("o1", state, None), now, store))  # type: ignore[arg-type]
    assert isinstance(exc, PositionAhead) and side_of(exc) == Side.STATE
    assert "ahead of JumpCloud's clock" in str(exc)
