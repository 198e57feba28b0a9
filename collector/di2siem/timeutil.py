"""RFC 3339 <-> epoch milliseconds, fast for the API's one shape (2022-12-18T14:57:03.801Z)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# the latest time format_ms (and the state file) can represent: 9999-12-31T23:59:59.999Z
MAX_MS = 253_402_300_799_999
# how far past this host's clock a time given to di2siem (an imported cursor or floor, a legacy
# state.end_time) may lie: ordinary clock skew between two hosts, never a real position
FUTURE_MARGIN_MS = 5 * 60_000
_day_cache: dict[str, int] = {}
# "YYYY-MM-DDTHH:" -> epoch ms of that hour, for the API's exact shape (…T14:57:03.801Z)
_hour_cache: dict[str, int] = {}


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_ms(text: str) -> int:
    """Parse an RFC 3339 time to epoch milliseconds (UTC). Raises ValueError."""
    # Fastest path: the API's exact shape within an hour already seen (one cache lookup)
    if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[16] == ":":
        base = _hour_cache.get(text[:14])
        if base is not None:
            digits = text[14:16] + text[17:19] + text[20:23]  # MMSSfff
            if digits.isdigit() and digits.isascii():
                value = int(digits)
                minute = value // 100_000
                second = value // 1000 % 100
                if minute <= 59 and second <= 60:
                    return base + (minute * 60 + second) * 1000 + value % 1000
    # Fast path: YYYY-MM-DDTHH:MM:SS[.fff...]Z
    if len(text) >= 20 and text[-1] in "Zz" and text[10] in "Tt ":
        day = text[:10]
        base = _day_cache.get(day)
        if base is None:
            d = datetime(int(day[0:4]), int(day[5:7]), int(day[8:10]), tzinfo=timezone.utc)
            base = int((d - _EPOCH).total_seconds()) * 1000
            if len(_day_cache) > 4096:
                _day_cache.clear()
            _day_cache[day] = base
        try:
            h = int(text[11:13])
            m = int(text[14:16])
            s = int(text[17:19])
        except ValueError:
            raise ValueError(f"not an RFC 3339 time: {text!r}") from None
        if text[13] != ":" or text[16] != ":" or h > 23 or m > 59 or s > 60:
            raise ValueError(f"not an RFC 3339 time: {text!r}")
        frac = text[19:-1]
        ms = 0
        if frac:
            if frac[0] != "." or not frac[1:].isdigit():
                raise ValueError(f"not an RFC 3339 time: {text!r}")
            ms = int((frac[1:] + "00")[:3])
        if len(text) == 24 and text[10] == "T":
            if len(_hour_cache) > 4096:
                _hour_cache.clear()
            _hour_cache[text[:14]] = base + h * 3_600_000
        return base + ((h * 60 + m) * 60 + s) * 1000 + ms
    return _slow_parse(text)


def parse_ms_or_none(value: object) -> int | None:
    """parse_ms for times read back from files (state, run record): None when the value is
    missing, not a string or not a readable time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_ms(value)
    except ValueError:
        return None


def _slow_parse(text: str) -> int:
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    # Python 3.9/3.10 fromisoformat wants 0, 3 or 6 fraction digits
    if "." in t:
        head, _, rest = t.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits += rest[0]
            rest = rest[1:]
        t = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    return _datetime_ms(d)


def _datetime_ms(d: datetime) -> int:
    """A datetime as epoch ms; a naive one is taken as UTC."""
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    delta = d - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def representable(ms: int | None) -> bool:
    """Whether ms is a time the state can hold (1970-01-01 .. 9999-12-31)."""
    return ms is not None and 0 <= ms <= MAX_MS


def parse_http_date_ms(value: str | None) -> int | None:
    """An HTTP date (RFC 7231 IMF-fixdate and the obsolete forms; Date, Retry-After) as epoch
    ms, or None when absent or unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return None if when is None else _datetime_ms(when)


def http_date_ms(value: str | None) -> int | None:
    """An HTTP Date header as epoch ms, or None when absent, unreadable or not a time the
    state can hold."""
    ms = parse_http_date_ms(value)
    return ms if representable(ms) else None


def format_ms(ms: int) -> str:
    """Epoch ms -> 2022-12-18T14:57:03.801Z."""
    d = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
