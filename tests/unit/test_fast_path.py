"""The seam for speed (engine/overlap.py) changes nothing shipped: for the same JumpCloud
pages, one org's stream with every wrapper (prefetch thread, background sender, splicing the
API's own text) posts the same bytes, and records the same state, as the plain path (no
threads, every event serialised). Events are generated, odd ones included: unicode and
escapes, nesting up to past json_depth, big integers, floats (NaN and Infinity too), no id,
repeated ids, no or unreadable times, times before the window."""

from __future__ import annotations

import io
import json
import tempfile
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from di2siem.config import parse
from di2siem.engine.context import OrgRun, StreamContext
from di2siem.engine.overlap import FAST, PLAIN, Speed
from di2siem.engine.stream import Stream
from di2siem.intakes import intake_for
from di2siem.intakes.base import Intake
from di2siem.log import Logger
from di2siem.shaping import Shaper
from di2siem.source.pages import split_page
from di2siem.state.deadletter import DeadLetters
from di2siem.state.store import StateStore
from di2siem.timeutil import format_ms, now_ms

ORG = "default"
NOW = now_ms()
HOUR = 3_600_000


class FakeJumpCloud:
    """Answers the stream's pages from fixed page texts, on a clock of its own."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.server_clock = (NOW, NOW)

    def server_now_ms(self) -> int:
        return NOW

    def probe(self, start_time: str, org: str = ORG) -> int:
        raise AssertionError("the clock is known: no probe")

    def pages(self, start_time: str, org: Any, transform: Any, on_defect: Any = None):
        for text in self.texts:
            yield split_page(text.encode("utf-8"), transform, on_defect)


class FakeSink:
    """Accepts every batch and keeps its exact body."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.framing = intake.framing
        self.bodies: list[bytes] = []
        self.resent = 0

    def ship(self, items: list, on_accepted: Any) -> None:
        self.bodies.append(self.framing.body(items))
        on_accepted(items)

    def settle(self) -> None:
        """Nothing waits for an acknowledgement here (BatchDelivery.settle)."""


def _config(state_dir: str, fmt: str, batch_size: int, rename: bool) -> Any:
    siem: dict[str, Any] = {
        "url": "https://siem.example/in",
        "api_key": "cx-key-for-tests",
        "format": fmt,
        "batch_size": batch_size,
        "custom_log_fields": {"reqHost": "app", "n": 7},
    }
    if rename:
        siem["timestamp_field_name"] = "eventTime"
    raw = {
        "jumpcloud": {"api_key": "jc-key-for-tests", "json_depth": 3},
        "siem": siem,
        "state_dir": state_dir,
    }
    return parse(raw, "/c.json")


def _ship(texts: list[str], fmt: str, batch_size: int, rename: bool, speed: Speed) -> tuple:
    with tempfile.TemporaryDirectory() as state_dir:
        cfg = _config(state_dir, fmt, batch_size, rename)
        log = Logger("error", io.StringIO())
        store = StateStore(state_dir, cfg.recent_ids_max)
        store.load()
        ctx = StreamContext(
            cfg, log, store, DeadLetters(state_dir), time.monotonic, time.monotonic() + 600, speed
        )
        intake = intake_for(cfg.siem)
        jc, sink = FakeJumpCloud(texts), FakeSink(intake)
        o = OrgRun(ORG, store.org(ORG), jc)  # type: ignore[arg-type]
        Stream(ctx, jc, sink, Shaper(cfg, intake.envelope)).run(o)  # type: ignore[arg-type]
        counts = (o.fetched, o.shipped, o.duplicates, o.skipped, o.deep, o.untimed)
        recorded = (o.state.cursor_ms, o.state.floor_ms, sorted(o.state.recent.times.items()))
        store.close()
        return sink.bodies, counts, recorded


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
    st.sampled_from(['a"b', "back\\slash", "tab\there", "line\nbreak", "é ü 中 😀", "\u2028"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def events(draw: Any, n: int, ms: int, timed: bool) -> dict[str, Any]:
    """Event ``n`` of the stream, stamped ``ms`` unless it has no (readable) time."""
    event: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        event["id"] = f"{n:024x}"
    elif draw(st.booleans()):
        event["id"] = draw(st.sampled_from([None, 1000 + n, ""]))  # keyed: the int, or the text
    when = draw(st.integers(0, 9)) if not timed else 0
    if when == 9:
        event["timestamp"] = draw(st.sampled_from([None, 5, "not a time", "9999-99-99"]))
    elif when != 8:
        event["timestamp"] = format_ms(ms)
    for key in draw(st.lists(st.text(min_size=1, max_size=5), max_size=4)):
        event.setdefault(key, draw(values))
    if draw(st.booleans()):
        event["geo"] = {"a": {"b": {"c": {"d": [1, 2.5, "x"]}}}}  # past json_depth 3
    return event


def _page_text(page: list[dict[str, Any]], compact: bool, ascii_only: bool) -> str:
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(page, separators=separators, ensure_ascii=ascii_only, allow_nan=True)


@st.composite
def scenarios(draw: Any) -> tuple:
    """Pages as JumpCloud sends them: ascending times (the oldest before the window), an
    event repeated only as itself (same id, same time), right after or a page later."""
    fmt = draw(st.sampled_from(["json_lines", "json_array", "coralogix"]))
    # coralogix stamps an untimed event with the host's now: only timed events compare
    timed = fmt == "coralogix"
    ages = sorted(draw(st.lists(st.integers(0, 30 * HOUR), max_size=24)), reverse=True)
    stream: list[dict[str, Any]] = []
    for n, age in enumerate(ages):
        event = draw(events(n, NOW - age, timed))
        stream.append(event)
        if draw(st.integers(0, 5)) == 0:
            stream.append(json.loads(json.dumps(event)))  # the same event again
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    pages = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    compact = draw(st.integers(0, 4)) > 0  # mostly the API's own compact text: spliced
    ascii_only = draw(st.integers(0, 3)) == 0  # sometimes non-ASCII written as unicode escapes
    texts = [_page_text(page, compact, ascii_only) for page in pages]
    return texts, fmt, draw(st.integers(1, 5)), draw(st.booleans())


def _values(bodies: list[bytes], fmt: str) -> list[Any]:
    """The JSON values of the posted records, batch by batch."""
    if fmt == "json_lines":
        return [[json.loads(line) for line in body.splitlines()] for body in bodies]
    return [json.loads(body) for body in bodies]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_fast_path_ships_the_same_bytes_as_the_plain_path(scenario: tuple) -> None:
    """Byte for byte, whatever the API's spelling: a page the splice trusts on its first event
    whose later events are written otherwise (unicode escapes, spaces) has those serialised.
    Same values, same counts, same state."""
    texts, fmt, batch_size, rename = scenario
    fast_bodies, *fast_rest = _ship(texts, fmt, batch_size, rename, FAST)
    plain_bodies, *plain_rest = _ship(texts, fmt, batch_size, rename, PLAIN)
    assert fast_rest == plain_rest
    assert _values(fast_bodies, fmt) == _values(plain_bodies, fmt)
    assert fast_bodies == plain_bodies


def test_the_fast_path_really_splices() -> None:
    """The property is not vacuous: compact pages take the splice (no re-serialising)."""
    texts = [
        _page_text([{"id": "a" * 24, "timestamp": format_ms(NOW - HOUR), "m": "é"}], True, False)
    ]
    spliced = []
    original = Shaper.fast_bytes

    def spy(self: Shaper, event: dict, raw: str, ts_ms: Any, *key: Any) -> Any:
        data = original(self, event, raw, ts_ms, *key)
        spliced.append(data is not None)
        return data

    Shaper.fast_bytes = spy  # type: ignore[method-assign]
    try:
        bodies, counts, _ = _ship(texts, "json_lines", 10, False, FAST)
        assert _ship(texts, "json_lines", 10, False, PLAIN)[0] == bodies
    finally:
        Shaper.fast_bytes = original  # type: ignore[method-assign]
    assert spliced == [True]
    assert counts[1] == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='":, \\ua}{1', max_size=40))
def test_the_splice_refuses_exactly_the_respelled_texts(raw: str) -> None:
    """The splice's one-pass check (shaping._spaced_separator, a backslash first) refuses the
    same texts as looking for each spelling it cannot vouch for: a unicode escape, a space
    after a separator."""
    from di2siem.shaping import _spaced_separator

    fast = ("\\" in raw and "\\u" in raw) or _spaced_separator(raw) is not None
    assert fast == ("\\u" in raw or '": ' in raw or '", ' in raw)
