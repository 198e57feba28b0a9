"""One TCP connection, optionally TLS, for intakes that stream bytes instead of making
requests (syslog): it writes a whole body by a deadline and then tells when the peer's TCP
stack has acknowledged every byte of it, and whether the connection is still up.

Both come from Linux: ``SIOCOUTQ`` (= ``TIOCOUTQ``) on a TCP socket is the bytes of its send
queue the peer has not acknowledged yet (sent or not); ``TCP_INFO``'s first byte is the
connection's state, ESTABLISHED until the peer closes (FIN) or resets (RST) it. For TLS they
are read on the socket under the TLS layer (the same descriptor): the TLS records of a body
are all written to it by the time ``write`` returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import ssl
import struct
import termios
import time

SIOCOUTQ = termios.TIOCOUTQ  # linux/sockios.h: SIOCOUTQ is TIOCOUTQ
TCP_ESTABLISHED = 1  # linux/tcp_states.h
CHUNK = 256 * 1024
POLL_FIRST_S = 0.0005
POLL_MAX_S = 0.02


class StalledWrite(TimeoutError):
    """The peer stopped taking bytes: the deadline came while a body was still being written
    or still waiting for the peer's acknowledgement."""

    def __init__(self, unacknowledged: int) -> None:
        super().__init__(f"{unacknowledged} bytes not acknowledged by the peer")
        self.unacknowledged = unacknowledged


class ConnectionDown(ConnectionError):
    """The peer closed or reset the connection before acknowledging everything."""


def tls_context(
    ca_bundle: str | None, client_cert: str | None, client_key: str | None
) -> ssl.SSLContext:
    """Verifies the server against ``ca_bundle`` (else the system's trust store) and its name,
    TLS 1.2 at least; presents the client certificate when given. Raises OSError/SSLError
    for unreadable files."""
    context = ssl.create_default_context(cafile=ca_bundle)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def _remaining(ends: float) -> float:
    left = ends - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline reached")
    return left


class TcpConnection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw = sock  # the TCP socket (under the TLS layer, if any): same descriptor

    @classmethod
    def open(
        cls, host: str, port: int, context: ssl.SSLContext | None, ends: float
    ) -> TcpConnection:
        """Connect (and finish the TLS handshake) by ``ends``. Raises OSError (ssl.SSLError and
        ssl.SSLCertVerificationError among them) or TimeoutError."""
        sock = socket.create_connection((host, port), timeout=_remaining(ends))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock.settimeout(_remaining(ends))
                sock = context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def unacknowledged(self) -> int:
        """Bytes written that the peer's TCP stack has not acknowledged yet (SIOCOUTQ)."""
        answer = fcntl.ioctl(self.raw.fileno(), SIOCOUTQ, struct.pack("i", 0))
        return struct.unpack("i", answer)[0]

    def up(self) -> bool:
        """Still ESTABLISHED: the peer has neither closed nor reset it."""
        try:
            info = self.raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return False
        return info[0] == TCP_ESTABLISHED

    def write(self, body: bytes, ends: float) -> None:
        """All of ``body`` handed to the kernel by ``ends`` (StalledWrite otherwise)."""
        view = memoryview(body)
        sent = 0
        while sent < len(view):
            left = ends - time.monotonic()
            if left <= 0:
                raise StalledWrite(len(view) - sent + self.unacknowledged())
            self.sock.settimeout(left)
            try:
                sent += self.sock.send(view[sent : sent + CHUNK])
            except TimeoutError:
                raise StalledWrite(len(view) - sent + self.unacknowledged()) from None

    def wait_acknowledged(self, ends: float) -> None:
        """Returns once the peer acknowledged every byte written and the connection is still up;
        ConnectionDown when it is not, StalledWrite at ``ends``."""
        pause = POLL_FIRST_S
        while True:
            waiting = self.unacknowledged()
            if not self.up():
                raise ConnectionDown(
                    f"the peer closed the connection ({waiting} bytes not acknowledged)"
                )
            if waiting == 0:
                return
            left = ends - time.monotonic()
            if left <= 0:
                raise StalledWrite(waiting)
            time.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX_S)

    def settle(self, seconds: float) -> None:
        """Read for up to ``seconds``: the peer's answer to our handshake arrives here (a TLS
        1.3 server refuses a client certificate after the client's handshake is done). Raises
        what reading raises (ssl.SSLError naming the alert) or ConnectionDown when the peer
        closes; a peer that sends nothing is fine."""
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            except ssl.SSLWantReadError:
                continue
            if not data:
                raise ConnectionDown("the peer closed the connection")

    def abort(self) -> None:
        """Close at once, discarding what the peer has not acknowledged (RST), so that no
        stale copy of a body arrives after it was sent again on a new connection."""
        with contextlib.suppress(OSError):
            self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._close()

    def close(self) -> None:
        """Over TLS, send close_notify first (RFC 5425 section 4.4: the client MUST; rsyslog
        logs a connection closed without it as an error), without waiting for the server's
        (which the RFC allows): non-blocking, the second half of the shutdown just stops."""
        if isinstance(self.sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                self.sock.settimeout(0)
                self.sock.unwrap()
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
