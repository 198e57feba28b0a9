"""Reading an answer's body within its size cap: gzip and deflate decoded by us, a bounded
piece at a time, so a compression bomb or an endless body is cut instead of held; and the
short, printable excerpts of answers and errors that log lines quote."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from ..errors import RetryableError
from .causes import describe

# What one answer may hold once decoded. A JumpCloud page (at most 10,000 events) is far
# below this; a compressed "bomb" is cut here instead of inflating into gigabytes.
MAX_PAGE_BYTES = 256 * 1024 * 1024
# Every other answer (SIEM acknowledgements, error bodies, tokens) is only looked at briefly.
MAX_ANSWER_BYTES = 64 * 1024
_CHUNK = 1024 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # only what we decode ourselves, with a size cap


def read_body(response, side: str, limit: int, whole: bool) -> bytes | bytearray:
    """The body, decoded (gzip/deflate) incrementally so no more than ``limit`` bytes are
    ever held. ``whole``: more than ``limit`` is an error; otherwise the rest is dropped."""
    raw = response.raw
    encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        decoder = _Inflater(side)
    else:
        raise RetryableError(
            f"{side} answered with Content-Encoding {printable(encoding)!r}, "
            f"which was not asked for (Accept-Encoding: {ACCEPT_ENCODING})",
            side=side,
        )
    expected = response.headers.get("Content-Length")
    length = int(expected) if expected and expected.isdigit() else None
    if whole and decoder is None and length is not None and length > limit:
        raise RetryableError(_too_large(side, limit), side=side)
    out = bytearray()
    try:
        if decoder is None and length is not None and length <= limit:
            # the usual page: one read of the announced size (no growing buffer)
            data = raw.read(length, decode_content=False)
            if len(data) != length:
                raise RetryableError(f"{side} answer was cut short", side=side)
            return data
        while True:
            chunk = raw.read(_CHUNK, decode_content=False)
            if not chunk:
                break
            for piece in (chunk,) if decoder is None else decoder.feed(chunk):
                out += piece
                if len(out) > limit:
                    if whole:
                        raise RetryableError(_too_large(side, limit), side=side)
                    del out[limit:]
                    return out
    except RetryableError:
        raise
    except Exception as exc:  # urllib3 protocol errors, resets, timeouts
        raise RetryableError(
            f"{side} answer could not be read: {describe(exc)}", side=side
        ) from None
    if decoder is not None and not decoder.complete and out:
        raise RetryableError(
            f"{side} answer was cut short (compressed stream incomplete)", side=side
        )
    if decoder is None and length is not None and length != len(out):
        raise RetryableError(f"{side} answer was cut short", side=side)
    return out


class _Inflater:
    """gzip (also concatenated members) or zlib data, decoded a bounded piece at a time."""

    def __init__(self, side: str) -> None:
        self.side = side
        # 32+: a zlib or a gzip header, detected (servers send either for "deflate")
        self.decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)

    @property
    def complete(self) -> bool:
        return self.decoder.eof

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``chunk``, in pieces of at most _CHUNK bytes."""
        data = chunk
        try:
            while data:
                piece = self.decoder.decompress(data, _CHUNK)
                data = self.decoder.unconsumed_tail
                if not data and self.decoder.eof and self.decoder.unused_data:
                    data = self.decoder.unused_data  # a concatenated gzip member follows
                    self.decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)
                if piece:
                    yield piece
        except zlib.error:
            raise RetryableError(
                f"{self.side} answer is not valid gzip/deflate data", side=self.side
            ) from None


def _too_large(side: str, limit: int) -> str:
    return (
        f"{side} answer is larger than {limit // (1024 * 1024)} MiB once decoded (a page never "
        "is; a compression bomb or a broken proxy); the page was not used"
    )


def printable(text: str, limit: int = 120) -> str:
    """Peer-chosen text made safe for one log line: no spaces, quotes or control chars."""
    text = "".join(c if c.isprintable() and c not in ' "' else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body_excerpt(response, limit: int = 200) -> str:
    """The start of an answer's body, one line; ends with "..." when cut (so the logger can
    redact a secret cut in half, see log.Logger.redact)."""
    try:
        content = response.content
        text = bytes(content[:limit]).decode("utf-8", "replace")
    except Exception:
        return ""
    text = " ".join(text.split())
    return text + "..." if len(content) > limit else text
