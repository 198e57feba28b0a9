"""A page of Directory Insights events: its text decoded, parsed as a JSON array of objects
with each event's own text kept beside it (the shaper ships it without re-serialising), and
the elements that can never be an event (defects) told apart from a malformed page."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from ..errors import RetryableError, Side

_WS = " \t\r\n"
# How many values JSON does not allow (NaN, Infinity, -Infinity) or Python cannot hold as an
# int (more digits than sys.get_int_max_str_digits()) were decoded so far: engine/classify.py
# re-serialises an event during whose parse this moved, instead of splicing its text.
NONSTANDARD = [0]


def _nonstandard_constant(name: str) -> float:
    NONSTANDARD[0] += 1
    return float(name)  # what json does; the shaper turns it into the string "NaN" etc.


def _long_int(digits: str) -> int | str:
    try:
        return int(digits)
    except ValueError:  # over Python's int digit limit: kept as its digits, a string
        NONSTANDARD[0] += 1
        return digits


_decoder = json.JSONDecoder(parse_constant=_nonstandard_constant)
_scan_once = _decoder.scan_once  # raises StopIteration where no JSON value starts
# used only when _scan_once failed: same, but for integers too long for int()
_tolerant_scan_once = json.JSONDecoder(
    parse_constant=_nonstandard_constant, parse_int=_long_int
).scan_once
Transform = Callable[[dict, str, int, int, int], Any]


def _pair(event: dict[str, Any], text: str, start: int, end: int, index: int) -> Any:
    return (event, text[start:end])


def decode_page(content: bytes | bytearray) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise RetryableError(
            "JumpCloud sent a malformed answer (not UTF-8)", side=Side.JUMPCLOUD
        ) from None


# Invalid UTF-8 bytes, as the surrogateescape decoder keeps them (U+DC80..U+DCFF)
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
UNPARSABLE = ("not an object", "nested too deep to parse", "not valid UTF-8")
# Called for an element of a well-formed page that can never become an event (one of
# UNPARSABLE): (its exact text, why); what it returns takes the element's place in the page.
OnDefect = Callable[[str, str], Any]


def decode_keeping_bytes(content: bytes | bytearray) -> tuple[str, bool]:
    """(text, whether it holds invalid UTF-8 bytes, kept as U+DC80..U+DCFF)."""
    try:
        return content.decode("utf-8"), False
    except UnicodeDecodeError:
        return content.decode("utf-8", "surrogateescape"), True


def _value_end(text: str, i: int) -> int:
    """Where the JSON value starting at text[i] (an object or array) ends, by its brackets
    (strings skipped); ValueError when it does not end. Only for values too deep to parse."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unterminated value")


def split_page(
    content: bytes | bytearray | str,
    transform: Transform | None = None,
    on_defect: OnDefect | None = None,
    escaped: bool = False,
) -> tuple[str, list[Any]]:
    """Parse a page (a JSON array of objects): (page text, list of
    ``transform(event, text, start, end, index)``), by default (event, event text) pairs.

    The event's own text (``text[start:end]``) lets the shaper ship it without
    re-serialising it; transforming while parsing means a page never holds all its decoded
    dicts at once, only small tuples and the page text (one block of memory).
    Anything else than an array of objects raises RetryableError (malformed answer), except,
    given ``on_defect``, an element that can never be an event in an otherwise well-formed
    page (``null``, nested past what the parser can hold, invalid UTF-8 inside it): it is
    handed to ``on_defect`` and the page goes on (the index counts events only). ``escaped``:
    the text came from decode_keeping_bytes and holds invalid bytes.
    """
    transform = transform or _pair
    if isinstance(content, str):
        text = content
    elif on_defect is None:
        text = decode_page(content)
    else:
        text, escaped = decode_keeping_bytes(content)
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    if i >= n or text[i] != "[":
        try:
            json.loads(text)
        except ValueError:
            raise RetryableError(
                "JumpCloud sent a malformed answer (not JSON)", side=Side.JUMPCLOUD
            ) from None
        raise RetryableError(
            "JumpCloud sent a malformed answer (not a JSON array)", side=Side.JUMPCLOUD
        )
    i += 1
    out: list[Any] = []
    append = out.append
    index = 0
    try:
        while text[i] in _WS:
            i += 1
        if text[i] == "]":
            i += 1
        else:
            while True:
                # the C scanner itself (raw_decode is a Python wrapper around it)
                try:
                    try:
                        event, end = _scan_once(text, i)
                    except ValueError:
                        event, end = _tolerant_scan_once(text, i)
                except RecursionError:
                    if on_defect is None:
                        raise RetryableError(
                            "JumpCloud sent an event nested too deep to parse", side=Side.JUMPCLOUD
                        ) from None
                    end = _value_end(text, i)
                    append(on_defect(text[i:end], UNPARSABLE[1]))
                else:
                    if type(event) is not dict:
                        if on_defect is None:
                            raise RetryableError(
                                "JumpCloud sent a malformed answer (non-object event)",
                                side=Side.JUMPCLOUD,
                            )
                        append(on_defect(text[i:end], UNPARSABLE[0]))
                    elif escaped and _ESCAPED_BYTES.search(text, i, end):
                        append(on_defect(text[i:end], UNPARSABLE[2]))
                    else:
                        append(transform(event, text, i, end, index))
                        index += 1
                c = text[end]
                if c == ",":  # compact pages: the next event starts right after the comma
                    i = end + 1
                    if text[i] in _WS:
                        while text[i] in _WS:
                            i += 1
                    continue
                i = end
                while c in _WS:
                    i += 1
                    c = text[i]
                i += 1
                if c == ",":
                    while text[i] in _WS:
                        i += 1
                elif c == "]":
                    break
                else:
                    raise ValueError("expected , or ]")
    except (ValueError, IndexError, StopIteration):
        raise RetryableError(
            "JumpCloud sent a malformed answer (not JSON)", side=Side.JUMPCLOUD
        ) from None
    if text[i:].strip(_WS):
        raise RetryableError(
            "JumpCloud sent a malformed answer (data after the array)", side=Side.JUMPCLOUD
        )
    return text, out
