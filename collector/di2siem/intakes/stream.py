"""The exchange of an intake that streams bytes over one TCP connection, TLS or plain
(syslog): no request and no answer, so a body counts as delivered once the receiver's TCP stack
has acknowledged every byte of it and the connection is still up (transport/tcp.py). That
promises the bytes reached the receiving host's kernel, not that the receiving program read,
parsed or stored them.

One connection is kept for the run. A connection the receiver closed between batches is
replaced before the next one; one that drops while a body is out, or whose peer stops
acknowledging until ``siem.timeout_seconds`` (or the run's deadline) passes, is reset (what the
peer had not acknowledged is discarded) and the attempt fails as retryable and possibly
delivered: delivery.py sends the body again on a new connection, under its resend cap.
"""

from __future__ import annotations

import ssl
import time

from ..errors import BudgetExceeded, FatalError, NoConnection, RetryableError, Side
from ..transport.causes import describe, not_connected
from ..transport.exchange import BUDGET_GRACE_S
from ..transport.tcp import ConnectionDown, StalledWrite, TcpConnection, tls_context
from .base import DELIVERED, Outcome

SIDE = Side.SIEM
SETTLE_S = 0.5  # after a TLS 1.3 handshake, how long `check` waits for the server's verdict


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = exc.verify_message or exc.reason or str(exc)
    elif isinstance(exc, ssl.SSLError):
        text = exc.reason or str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return "".join(c if c.isprintable() else "?" for c in str(text))[:200]


class StreamTransport:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: bool,
        ca_bundle: str | None,
        client_cert: str | None,
        client_key: str | None,
        timeout: float,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.ca_bundle, self.client_cert, self.client_key = ca_bundle, client_cert, client_key
        self.timeout = timeout
        self.where = f"{'tls' if tls else 'tcp'}://{host}:{port}"
        self.endpoint = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self._context: ssl.SSLContext | None = None
        self.connection: TcpConnection | None = None
        self._wrote = False  # the current attempt began writing its body

    # -- the Transport contract (intakes/base.py) --------------------------------------------

    def send(self, body: bytes, deadline: float | None) -> Outcome:
        ends, by_budget = self._ends(deadline)
        self._wrote = False
        connection = self._connected(ends, by_budget)
        self._wrote = True
        try:
            connection.write(body, ends)
            connection.wait_acknowledged(ends)
        except StalledWrite as exc:
            self._drop()
            if by_budget:
                raise BudgetExceeded(
                    f"{SIDE} had not acknowledged {exc.unacknowledged} bytes of a batch when "
                    f"run_time_budget_seconds ran out (+{BUDGET_GRACE_S:g}s grace): a stalled "
                    "receiver",
                    side=SIDE,
                ) from None
            raise RetryableError(
                f"{SIDE} {self.where} had not acknowledged {exc.unacknowledged} bytes of a "
                f"{len(body)}-byte batch after {self.timeout:g}s (siem.timeout_seconds): the "
                "receiver stopped reading",
                side=SIDE,
            ) from None
        except ssl.SSLError as exc:
            self._drop()
            if "ALERT" not in str(exc.reason or "").upper():  # EOF, a reset under TLS
                raise self._dropped(exc, body) from None
            raise FatalError(
                f"{SIDE} {self.where} ended the TLS session ({_why(exc)}): check "
                "siem.client_cert, siem.client_key and the receiver's TLS settings",
                side=SIDE,
            ) from None
        except OSError as exc:  # ConnectionDown, a reset, a broken pipe
            self._drop()
            raise self._dropped(exc, body) from None
        return DELIVERED

    def _dropped(self, exc: BaseException, body: bytes) -> RetryableError:
        return RetryableError(
            f"{SIDE} {self.where} dropped the connection while a {len(body)}-byte batch was "
            f"out ({_why(exc)})",
            side=SIDE,
        )

    def maybe_delivered(self, exc: BaseException) -> bool:
        return self._wrote

    def probe(self, deadline: float | None) -> str:
        """Connect (and, over TLS, complete the handshake, verifying the server) without
        writing a byte."""
        ends, by_budget = self._ends(deadline)
        connection = self._open(ends, by_budget)
        try:
            if self.tls and connection.sock.version() == "TLSv1.3":
                self._settle(connection, min(SETTLE_S, max(0.0, ends - time.monotonic())))
            if not connection.up():
                raise FatalError(f"{SIDE} {self.where} closed the connection at once", side=SIDE)
        finally:
            connection.close()
        if not self.tls:
            return f"{self.where} accepted a TCP connection, nothing sent"
        trust = f"siem.ca_bundle {self.ca_bundle}" if self.ca_bundle else "the system trust store"
        mine = ", client certificate presented" if self.client_cert else ""
        return (
            f"{self.where} TLS handshake done (server certificate verified against {trust}"
            f"{mine}), nothing sent"
        )

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    # -- connections ---------------------------------------------------------------------------

    def _ends(self, deadline: float | None) -> tuple[float, bool]:
        now = time.monotonic()
        ends, by_budget = now + self.timeout, False
        if deadline is not None and deadline + BUDGET_GRACE_S < ends:
            ends, by_budget = deadline + BUDGET_GRACE_S, True
        if ends <= now:
            raise BudgetExceeded(
                f"{SIDE}: run_time_budget_seconds used up before the batch was sent", side=SIDE
            )
        return ends, by_budget

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.abort()
            self.connection = None

    def _connected(self, ends: float, by_budget: bool) -> TcpConnection:
        """The run's connection, replaced when the receiver closed it since the last batch."""
        if self.connection is not None and not self.connection.up():
            self._drop()
        if self.connection is None:
            self.connection = self._open(ends, by_budget)
        return self.connection

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = tls_context(self.ca_bundle, self.client_cert, self.client_key)
            except (OSError, ValueError) as exc:
                keys = "siem.ca_bundle" + (
                    ", siem.client_cert, siem.client_key" if self.client_cert else ""
                )
                raise FatalError(
                    f"{SIDE} TLS files could not be loaded ({_why(exc)}): check {keys}", side=SIDE
                ) from None
        return self._context

    def _open(self, ends: float, by_budget: bool) -> TcpConnection:
        """The connection, or its failure in plain words (transport/causes.py): one that no
        connection could be made for (refused, no such name, no route) is a NoConnection."""
        context = self.context() if self.tls else None
        at = f"{SIDE} {self.endpoint}"
        try:
            return TcpConnection.open(self.host, self.port, context, ends)
        except ssl.SSLCertVerificationError as exc:
            raise FatalError(
                f"{at}: {describe(exc)}: check siem.url or set siem.ca_bundle to the CA that "
                "signed the receiver's certificate",
                side=SIDE,
            ) from None
        except ssl.SSLEOFError as exc:
            raise RetryableError(f"{at}: {describe(exc)}", side=SIDE) from None
        except ssl.SSLError as exc:
            raise FatalError(
                f"{at}: {describe(exc)}: check siem.url (a TLS port), siem.client_cert and the "
                "receiver's TLS settings",
                side=SIDE,
            ) from None
        except TimeoutError:
            if by_budget:
                raise BudgetExceeded(
                    f"{SIDE} {self.where} not connected when run_time_budget_seconds ran out",
                    side=SIDE,
                ) from None
            raise RetryableError(
                f"{at}: timed out after {self.timeout:g}s connecting", side=SIDE
            ) from None
        except OSError as exc:
            failed = NoConnection if not_connected(exc) else RetryableError
            raise failed(f"{at}: {describe(exc)}", side=SIDE) from None

    def _settle(self, connection: TcpConnection, seconds: float) -> None:
        try:
            connection.settle(seconds)
        except ssl.SSLError as exc:
            raise FatalError(
                f"{SIDE} {self.where} refused the TLS session after the handshake "
                f"({_why(exc)}): check siem.client_cert and siem.client_key",
                side=SIDE,
            ) from None
        except ConnectionDown:
            raise FatalError(
                f"{SIDE} {self.where} closed the connection after the TLS handshake (does it "
                "require a client certificate? set siem.client_cert)",
                side=SIDE,
            ) from None
        except OSError as exc:
            raise FatalError(
                f"{SIDE} {self.where} reset the connection after the TLS handshake "
                f"({_why(exc)}): check siem.client_cert and the receiver's TLS settings",
                side=SIDE,
            ) from None
