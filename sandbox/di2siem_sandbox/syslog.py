"""A syslog receiver on loopback: TCP or TLS (RFC 5425), octet-counted (``LEN SP MSG``) or
LF-ended frames, every message parsed strictly as RFC 5424 (PRI 0..191, VERSION 1, an RFC 3339
TIMESTAMP of at most 6 fractional digits, HOSTNAME <= 255, APP-NAME <= 48, PROCID <= 128,
MSGID <= 32 printable US-ASCII, structured data, MSG). Syslog has no answer: a frame that does
not parse is recorded in ``errors`` and the connection is closed, as receivers do; so is a TLS
connection the client ends without close_notify (RFC 5425 section 4.4; rsyslog logs it).

Switches: ``paused`` (stop reading: the sender's unsent queue fills and stays full),
``drop_after`` (after that many more messages, reset the connection mid-batch, discarding
what was read but not yet parsed; once), ``require_client_cert`` (TLS: a client certificate
signed by ``client_ca``), ``max_frame`` (the longest message taken: RFC 5425 says a receiver
must take 2,048 octets and should take 8,192; the default takes 1 MiB), ``read_delay_s`` (a
slow reader: that long between reads). ``rcvbuf`` keeps the receive buffer small, so that
what the receiver has not read stays unacknowledged at the sender. Test certificates:
tlsfiles.py.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .plumbing.base import append_jsonl

PRINTUSASCII = re.compile(rb"[\x21-\x7e]+")
TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})"
)
HEADER_LIMITS = (("HOSTNAME", 255), ("APP-NAME", 48), ("PROCID", 128), ("MSGID", 32))
SD_NAME = re.compile(rb"[\x21-\x7e]{1,32}")
MAX_FRAME = 1024 * 1024
BOM = b"\xef\xbb\xbf"


class Invalid(ValueError):
    """A frame or message that breaks RFC 5424/5425/6587."""


@dataclass(frozen=True)
class Message:
    raw: bytes  # the message as framed (without length or LF)
    pri: int
    timestamp: str | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: str | None
    msg: str | None

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8


def _field(data: bytes, at: int, name: str, limit: int) -> tuple[str | None, int]:
    end = data.find(b" ", at)
    if end < 0:
        raise Invalid(f"{name}: missing (no space after it)")
    value = data[at:end]
    if not PRINTUSASCII.fullmatch(value) or len(value) > limit:
        raise Invalid(f"{name}: must be 1..{limit} printable US-ASCII characters")
    text = value.decode("ascii")
    return (None if text == "-" else text), end + 1


def _timestamp(text: str) -> None:
    match = TIMESTAMP.fullmatch(text)
    if not match:
        raise Invalid(f"TIMESTAMP: not RFC 3339 with at most 6 fractional digits ({text!r})")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        raise Invalid(f"TIMESTAMP: not a valid date and time ({text!r})") from None
    if second > 60:
        raise Invalid(f"TIMESTAMP: second {second}")


def _structured_data(data: bytes, at: int) -> tuple[str | None, int]:
    if data[at : at + 1] == b"-":
        return None, at + 1
    start = at
    while data[at : at + 1] == b"[":
        at += 1
        name = SD_NAME.match(data, at)
        if not name:
            raise Invalid("STRUCTURED-DATA: bad SD-ID")
        at = name.end()
        while data[at : at + 1] == b" ":
            pair = re.compile(rb'([^= \]"]{1,32})="').match(data, at + 1)
            if not pair:
                raise Invalid("STRUCTURED-DATA: bad SD-PARAM")
            at = pair.end()
            while True:
                char = data[at : at + 1]
                if not char:
                    raise Invalid("STRUCTURED-DATA: unterminated PARAM-VALUE")
                if char == b"\\":
                    at += 2
                    continue
                if char == b"]":
                    raise Invalid("STRUCTURED-DATA: unescaped ] in a PARAM-VALUE")
                at += 1
                if char == b'"':
                    break
        if data[at : at + 1] != b"]":
            raise Invalid("STRUCTURED-DATA: SD-ELEMENT not closed")
        at += 1
    if at == start:
        raise Invalid("STRUCTURED-DATA: neither - nor an SD-ELEMENT")
    return data[start:at].decode("utf-8"), at


def parse_message(data: bytes) -> Message:
    """One RFC 5424 message, strictly."""
    match = re.match(rb"<(0|[1-9]\d{0,2})>1 ", data)
    if not match:
        raise Invalid("HEADER: must start <PRI>1 with PRI 0..191 and VERSION 1")
    pri = int(match.group(1))
    if pri > 191:
        raise Invalid(f"PRI: {pri} is over 191")
    at = match.end()
    stamp, at = _field(data, at, "TIMESTAMP", 64)
    if stamp is not None:
        _timestamp(stamp)
    fields = []
    for name, limit in HEADER_LIMITS:
        value, at = _field(data, at, name, limit)
        fields.append(value)
    if at >= len(data) + 1:
        raise Invalid("STRUCTURED-DATA: missing")
    sd, at = _structured_data(data, at)
    msg = None
    if at < len(data):
        if data[at : at + 1] != b" ":
            raise Invalid("MSG: must follow STRUCTURED-DATA after one space")
        body = data[at + 1 :]
        if body.startswith(BOM):
            body = body[len(BOM) :]
        try:
            msg = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("MSG: not UTF-8") from None
    return Message(data, pri, stamp, *fields, sd, msg)


class SyslogReceiver:
    def __init__(
        self,
        *,
        framing: str = "octet_counting",
        certfile: str | None = None,
        keyfile: str | None = None,
        client_ca: str | None = None,
        require_client_cert: bool = False,
        rcvbuf: int | None = None,
        max_frame: int = MAX_FRAME,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if framing not in ("octet_counting", "lf"):
            raise ValueError(framing)
        self.framing = framing
        self.context: ssl.SSLContext | None = None
        if certfile:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(certfile, keyfile)
            if require_client_cert:
                self.context.verify_mode = ssl.CERT_REQUIRED
                self.context.load_verify_locations(client_ca)
        self.rcvbuf = rcvbuf
        self.max_frame = max_frame
        self.read_delay_s = 0.0
        self.lock = threading.Lock()
        self.received: list[Message] = []
        self.errors: list[str] = []  # frames that broke the RFCs, TLS handshakes that failed
        self.connections = 0
        self.handshakes = 0  # TLS handshakes completed
        self.bytes_read = 0
        self.paused = threading.Event()
        self.drop_after: int | None = None
        self.drops = 0
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self.keep_records = True  # False: count the messages (accepted), keep none
        self.accepted = 0
        self.out_path: Path | None = None  # each message appended as a JSON line {"raw": ...}
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # before listen: accepted sockets inherit it (and its window)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind((host, port))
        self.port = self.listener.getsockname()[1]

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{'tls' if self.context else 'tcp'}://{host}:{self.port}"

    def reset(self) -> None:
        """Forget what was received (the counters too); connections stay up."""
        with self.lock:
            self.received.clear()
            self.errors.clear()
            self.accepted = self.connections = self.handshakes = self.bytes_read = 0

    def messages(self) -> list[str]:
        """Every MSG received, in order."""
        with self.lock:
            return [m.msg or "" for m in self.received]

    def start(self) -> SyslogReceiver:
        self.listener.listen(16)
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._closing.set()
        self.paused.clear()
        for thread in self._threads[:1]:  # the accept loop, before its socket goes
            thread.join(5)
        self.listener.close()
        with self.lock:
            for sock in self._open:
                _reset(sock)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> SyslogReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.05)  # so that stop() ends this loop
        while not self._closing.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            with self.lock:
                self.connections += 1
                self._open.append(sock)
            self._spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.context is not None:
                sock.settimeout(5)
                try:
                    sock = self.context.wrap_socket(
                        sock, server_side=True, suppress_ragged_eofs=False
                    )
                except (ssl.SSLError, OSError) as exc:
                    self._error(f"TLS handshake: {exc}")
                    return
                with self.lock:
                    self.handshakes += 1
                    self._open.append(sock)
            sock.settimeout(0.05)
            self._read(sock)
        finally:
            if self._closing.is_set():
                _reset(sock)
            else:
                sock.close()

    def _error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    def _read(self, sock: socket.socket) -> None:
        buffer = bytearray()
        while not self._closing.is_set():
            if self.paused.is_set():
                self._closing.wait(0.01)
                continue
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except ssl.SSLEOFError:  # as rsyslog logs it: GnuTLS "non-properly terminated"
                self._error("TLS connection closed without close_notify (RFC 5425 section 4.4)")
                return
            except OSError:
                return
            if not chunk:
                if buffer:
                    self._error(f"connection closed inside a frame ({len(buffer)} bytes)")
                return
            self.bytes_read += len(chunk)
            if self.read_delay_s:
                self._closing.wait(self.read_delay_s)
            buffer += chunk
            try:
                if self._frames(buffer):
                    with self.lock:
                        self.drops += 1
                    _reset(sock)
                    return
            except Invalid as exc:
                self._error(str(exc))
                return

    def _frames(self, buffer: bytearray) -> bool:
        """Take the whole frames off ``buffer``; True when the connection is to be dropped."""
        while True:
            frame = self._next_frame(buffer)
            if frame is None:
                return False
            message = parse_message(frame)
            with self.lock:
                self.accepted += 1
                if self.keep_records:
                    self.received.append(message)
                if self.out_path is not None:
                    append_jsonl(self.out_path, [{"raw": message.raw.decode("utf-8", "replace")}])
                if self.drop_after is not None:
                    self.drop_after -= 1
                    if self.drop_after <= 0:
                        self.drop_after = None
                        return True

    def _next_frame(self, buffer: bytearray) -> bytes | None:
        if self.framing == "lf":
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > self.max_frame:
                    raise Invalid("LF framing: no line feed within the frame limit")
                return None
            frame = bytes(buffer[:end])
            del buffer[: end + 1]
            if len(frame) > self.max_frame:
                raise Invalid(f"LF framing: a frame of {len(frame)} octets, over the limit")
            return frame
        space = buffer.find(b" ", 0, 9)
        if space < 0:
            if len(buffer) >= 9 or (buffer and not buffer.isdigit()):
                raise Invalid("octet counting: MSG-LEN must be digits followed by one space")
            return None
        length = bytes(buffer[:space])
        if not length.isdigit() or length.startswith(b"0"):
            raise Invalid(f"octet counting: bad MSG-LEN {length[:12]!r}")
        size = int(length)
        if size > self.max_frame:
            raise Invalid(f"octet counting: MSG-LEN {size} over the frame limit")
        if len(buffer) < space + 1 + size:
            return None
        frame = bytes(buffer[space + 1 : space + 1 + size])
        del buffer[: space + 1 + size]
        return frame


def _reset(sock: socket.socket) -> None:
    """Close with an RST: what the peer sent and we did not read is thrown away."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
