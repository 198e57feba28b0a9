"""Pure logic: time parsing, Retry-After, backoff, batching, page splitting, shaping, state."""

from __future__ import annotations

import errno
import json
import os
import random
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from di2siem.batching import JSON_ARRAY, JSON_LINES, Batcher, Item
from di2siem.config import parse
from di2siem.errors import GaveUpError, RetryableError, Side, StateError, StateWriteError
from di2siem.intakes import intake_for
from di2siem.log import Logger
from di2siem.shaping import Shaper, encode, too_deep
from di2siem.source.pages import split_page
from di2siem.state.orgstate import OrgState
from di2siem.state.reading import read_orgs, snapshot
from di2siem.state.recent import RecentIds
from di2siem.state.store import StateStore
from di2siem.timeutil import format_ms, parse_ms
from di2siem.transport.retry import RetryPolicy, parse_retry_after

# -- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2022-12-18T14:57:03.801Z", 1671375423801),
        ("2022-12-18T14:57:03Z", 1671375423000),
        ("2022-12-18T14:57:03.8Z", 1671375423800),
        ("2022-12-18T14:57:03.801234Z", 1671375423801),
        ("2022-12-18T16:57:03.801+02:00", 1671375423801),
        ("1970-01-01T00:00:00.000Z", 0),
    ],
)
def test_parse_ms(text: str, ms: int) -> None:
    assert parse_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "yesterday", "2022-13-18T14:57:03Z", "2022-12-18T25:00:00Z"])
def test_parse_ms_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ms(bad)


def test_parse_ms_hour_cache_agrees_with_the_full_parse() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        ms = rng.randrange(0, 4_102_444_800_000)
        text = format_ms(ms)
        assert parse_ms(text) == ms == parse_ms(text)  # first parse fills the hour cache
    parse_ms("2022-12-18T14:00:00.000Z")
    for bad in ("2022-12-18T14:60:03.801Z", "2022-12-18T14:57:61.801Z", "2022-12-18T14:5x:03.801Z"):
        with pytest.raises(ValueError):
            parse_ms(bad)


def test_format_ms_round_trip() -> None:
    for ms in (0, 1671375423801, 1671375423000, 1764115200999):
        assert parse_ms(format_ms(ms)) == ms
    assert format_ms(1671375423801) == "2022-12-18T14:57:03.801Z"


# -- retries ---------------------------------------------------------------------------------


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    assert 9 <= parse_retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10
    assert parse_retry_after(formatdate(now - 10, usegmt=True), now=now) == 0.0


def test_backoff_is_exponential_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(5, base_delay=1.0, max_delay=8.0, rng=random.Random(1))
    for attempt in range(6):
        ceiling = min(8.0, 2**attempt)
        for _ in range(20):
            assert ceiling / 2 <= policy.delay(attempt, None) <= ceiling
    assert policy.delay(0, 3.0) == 3.0
    assert policy.delay(0, 100.0) == 8.0  # capped by retry_max_delay_seconds


def test_retry_policy_gives_up_after_max_retries() -> None:
    slept: list[float] = []
    policy = RetryPolicy(3, base_delay=0.1, max_delay=1.0, sleep=slept.append)
    calls = []

    def fail() -> None:
        calls.append(1)
        raise RetryableError("SIEM answered 503", retry_after=0.2, side=Side.SIEM)

    with pytest.raises(GaveUpError, match="gave up after 4 attempts"):
        policy.run(fail, "SIEM post")
    assert len(calls) == 4 and slept == [0.2, 0.2, 0.2] and policy.retries == 3


# -- batching --------------------------------------------------------------------------------


def _items(sizes: list[int]) -> list[Item]:
    return [Item(b"x" * n, str(i), i) for i, n in enumerate(sizes)]


def test_batches_capped_by_count() -> None:
    b = Batcher(3, 10_000, JSON_LINES)
    out = [batch for item in _items([10] * 7) if (batch := b.add(item))]
    out.append(b.take())
    assert [len(x) for x in out] == [3, 3, 1]


def test_batches_capped_by_bytes_including_framing() -> None:
    b = Batcher(100, 25, JSON_ARRAY)  # "[" + a + "," + b + "]"
    out = [batch for item in _items([10, 10, 10, 3]) if (batch := b.add(item))]
    out.append(b.take())
    assert [len(x) for x in out] == [2, 2]
    for batch in out:
        assert len(JSON_ARRAY.body(batch)) <= 25 == b.max_bytes
        assert JSON_ARRAY.size(batch) == len(JSON_ARRAY.body(batch))
    assert not b.fits_alone(24) and b.fits_alone(23)


def test_json_lines_body() -> None:
    items = [Item(b'{"a":1}', "1", 1), Item(b'{"b":2}', "2", 2)]
    assert JSON_LINES.body(items) == b'{"a":1}\n{"b":2}\n'
    assert JSON_ARRAY.body(items) == b'[{"a":1},{"b":2}]'
    for framing in (JSON_LINES, JSON_ARRAY):
        for n in range(4):
            part = _items([3] * n)
            expected = framing.head + framing.sep.join(i.data for i in part) + framing.tail
            assert framing.body(part) == expected and len(expected) == framing.size(part)


# -- pages -----------------------------------------------------------------------------------


def test_split_page_keeps_each_event_text() -> None:
    page = [{"id": "a", "n": [1, {"x": "é"}]}, {"id": "b"}]
    raw = json.dumps(page, separators=(",", ":"), ensure_ascii=False).encode()
    text, pairs = split_page(raw)
    assert text == raw.decode()
    assert [p[0] for p in pairs] == page
    assert [p[1] for p in pairs] == [encode(e) for e in page]
    _, spaced = split_page(b' [ {"id": "a"} ,\n {"id":"b"} ] \n')
    assert [p[0]["id"] for p in spaced] == ["a", "b"]
    assert split_page(b"[]")[1] == [] == split_page(b" [ ]\n")[1]


@pytest.mark.parametrize(
    "body", [b"", b"<html>", b"{}", b"[1]", b'[{"a":1}', b'[{"a":1},]', b"[{}] x", b"\xff["]
)
def test_split_page_rejects_malformed(body: bytes) -> None:
    with pytest.raises(RetryableError, match="malformed"):
        split_page(body)


# -- shaping ---------------------------------------------------------------------------------
def shaper_of(cfg) -> Shaper:
    return Shaper(cfg, intake_for(cfg.siem).envelope)


def _cfg(**siem):
    raw = {
        "jumpcloud": {"api_key": "jc-key-for-tests"},
        "siem": {
            "url": "https://x.example/y",
            "api_key": "cx-key-for-tests",
            "custom_log_fields": {"reqHost": "app", "customField": "sub", "severity": "info"},
            **siem,
        },
    }
    return parse(raw, "/c.json")


EVENT = {"timestamp": "2022-12-18T14:57:03.801Z", "id": "e1", "geo": {"c": "IL", "l": 32.08}}


@pytest.mark.parametrize("fmt", ["json_lines", "coralogix"])
@pytest.mark.parametrize(
    "event",
    [
        EVENT,
        {"id": "e2", "timestamp": "2022-12-18T14:57:03.801Z"},
        {"timestamp": "2022-12-18T14:57:03.801Z"},
        {"id": "e3"},
        {"id": "e4", "timestamp": "2022-12-18T14:57:03.801Z", "severity": "Medium"},
        {"id": "e5", "x": {"timestamp": EVENT["timestamp"]}, "timestamp": EVENT["timestamp"]},
        {"id": "é", "timestamp": "2022-12-18T14:57:03.801Z", "m": 'a"timestamp":"b'},
    ],
)  # fmt: skip
def test_fast_and_slow_shaping_give_identical_bytes(fmt: str, event: dict) -> None:
    cfg = _cfg(format=fmt)
    raw = encode(event)
    fast = shaper_of(cfg)
    fast.begin_page(json.loads(raw), raw)
    assert fast.fast
    slow = shaper_of(cfg)
    expected = slow.shape(json.loads(raw), None, 7)
    assert fast.shape(json.loads(raw), raw, 7) == expected
    assert fast.fast_bytes(json.loads(raw), raw, 7) in (expected, None)


@pytest.mark.parametrize("fmt", ["json_lines", "coralogix"])
@pytest.mark.parametrize(
    "event",
    [
        {"id": "e1", "timestamp": "2022-12-18T14:57:03.801Z"},
        {"timestamp": "2022-12-18T14:57:03.801Z", "id": "e1"},
        {"timestamp": "2022-12-18T14:57:03.801Z"},
        {"id": "e1"},
        {},
        {"id": "é", "x": {"y": [1, 2]}, "timestamp": "2022-12-18T14:57:03.801Z", "z": 1},
    ],
)  # fmt: skip
@pytest.mark.parametrize("custom", [{}, {"reqHost": "h"}])
def test_fast_bytes_gives_the_serialised_bytes(fmt: str, event: dict, custom: dict) -> None:
    cfg = _cfg(format=fmt, custom_log_fields=custom)
    raw = encode(event)
    fast = shaper_of(cfg)
    fast.begin_page(json.loads(raw), raw)
    assert fast.fast_bytes(json.loads(raw), raw, 7) == shaper_of(cfg).shape(dict(event), None, 7)


def test_a_null_time_is_moved_like_the_serialiser_does() -> None:
    cfg = _cfg(format="json_lines", custom_log_fields={})
    raw = encode({"id": "e1", "timestamp": None, "a": 1})
    fast = shaper_of(cfg)
    fast.begin_page(json.loads(raw), raw)
    slow = shaper_of(cfg).shape(json.loads(raw), None, None)
    assert json.loads(slow) == {"id": "e1", "a": 1, "jc_timestamp": None}
    assert fast.fast_bytes(json.loads(raw), raw, None) is None
    assert fast.shape(json.loads(raw), raw, None) == slow


def test_legacy_shape_moves_the_timestamp_to_the_end_then_custom_fields() -> None:
    out = json.loads(shaper_of(_cfg()).shape(dict(EVENT), None, None))
    assert list(out) == ["id", "geo", "jc_timestamp", "reqHost", "customField", "severity"]


def test_same_timestamp_names_keep_the_field() -> None:
    cfg = _cfg(timestamp_field_name="timestamp")
    out = json.loads(shaper_of(cfg).shape(dict(EVENT), None, None))
    assert out["timestamp"] == EVENT["timestamp"] and "jc_timestamp" not in out


def test_coralogix_entry() -> None:
    cfg = _cfg(format="coralogix", application_name="a", subsystem_name="s", severity=5)
    entry = json.loads(shaper_of(cfg).shape(dict(EVENT), None, 1671375423801))
    assert entry["applicationName"] == "a" and entry["subsystemName"] == "s"
    assert entry["severity"] == 5 and entry["timestamp"] == 1671375423801
    assert entry["text"]["id"] == "e1" and entry["text"]["jc_timestamp"] == EVENT["timestamp"]


def test_non_canonical_api_text_falls_back_to_serialising() -> None:
    shaper = shaper_of(_cfg())
    raw = '{"timestamp": "2022-12-18T14:57:03.801Z", "id": "e1"}'
    shaper.begin_page(json.loads(raw), raw)
    assert not shaper.fast
    out = shaper.shape(json.loads(raw), raw, None)
    assert b" " not in out.replace(b'"severity":"info"', b"")


def test_too_deep() -> None:
    node: dict = {"leaf": 1}
    for _ in range(10):
        node = {"child": node}
    assert not too_deep({"resource": node}, 11) and too_deep({"resource": node}, 10)
    assert not too_deep({"a": [1, 2]}, 1) and too_deep({"a": [[1]]}, 1)


# -- state -----------------------------------------------------------------------------------


def test_start_is_max_of_cursor_minus_overlap_and_floor_plus_1() -> None:
    assert OrgState().start_ms(300_000) is None
    assert OrgState(cursor_ms=1_000_000).start_ms(300_000) == 700_000
    assert OrgState(cursor_ms=1_000_000, floor_ms=900_000).start_ms(300_000) == 900_001
    assert OrgState(floor_ms=5).start_ms(300_000) == 6


def test_recent_ids_prune_and_cap_raise_the_floor() -> None:
    rid = RecentIds()
    for batch in range(10):
        rid.add([(f"{batch}-{i}", batch * 1000 + i) for i in range(100)])
    assert len(rid) == 1000 and "3-5" in rid
    rid.prune(3000)
    assert len(rid) == 700 and "2-99" not in rid and "3-0" in rid
    floor = rid.cap(300, cursor_ms=9099)
    assert floor == 6099 and len(rid) == 300 and "6-99" not in rid and "7-0" in rid
    assert json.loads(rid.json()) == {
        f"{b}-{i}": b * 1000 + i for b in (7, 8, 9) for i in range(100)
    }


def test_recent_ids_json_and_first_id_wins() -> None:
    rid = RecentIds()
    rid.add([("a", 1), ('q"é', 2), ("a", 3)])
    rid.add([("b", 4), ("a", 5)])
    assert rid.times == {"a": 1, 'q"é': 2, "b": 4}
    assert rid.json() == '{"a":1,"q\\"é":2,"b":4}'
    assert json.loads(rid.json()) == rid.times


def test_recent_ids_never_evict_the_cursor_millisecond() -> None:
    rid = RecentIds()
    rid.add([(f"a{i}", 5) for i in range(50)])
    rid.add([(f"b{i}", 5) for i in range(50)])
    assert rid.cap(10, cursor_ms=5) is None and len(rid) == 100


def test_state_store_atomic_round_trip(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    store.load()
    assert not store.has("_default")
    org = store.org("_default")
    org.cursor_ms = 1671375423801
    org.floor_ms = 1671375000000
    org.recent.add([("x", 1671375423801), ("y", 1671375423800)])
    store.save("_default")
    store.save("_default")
    store.close()
    assert sorted(os.listdir(tmp_path / "orgs")) == ["_default.json"]  # no temp file left
    data = json.loads((tmp_path / "orgs" / "_default.json").read_text())
    assert data["cursor"] == "2022-12-18T14:57:03.801Z" and data["org"] == "_default"
    again = StateStore(str(tmp_path))
    again.load()
    loaded = again.org("_default")
    assert loaded.cursor_ms == 1671375423801 and loaded.floor_ms == 1671375000000
    assert "x" in loaded.recent and len(loaded.recent) == 2
    assert oct((tmp_path / "orgs" / "_default.json").stat().st_mode & 0o777) == "0o600"


def test_a_state_write_error_names_the_org_file(tmp_path: Path, monkeypatch) -> None:
    store = StateStore(str(tmp_path))
    store.load()

    def refused(path: str, *_: object, **__: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr("di2siem.state.store.replace_file", refused)
    with pytest.raises(StateWriteError) as caught:
        store.save("_default")
    said = str(caught.value)
    assert said.startswith(
        f"cannot write the state in state_dir {tmp_path}: {tmp_path}/orgs/_default.json: "
        "permission denied; accepted batches cannot be recorded"
    ), said
    assert "state.json" not in said


def test_state_org_files_are_separate_and_named_safely(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    store.load()
    names = ["5f1b0c2e8d3a4b0012345678", "provider:abc", "../x", ".hidden", "a/b%c"]
    for n, name in enumerate(names):
        store.org(name).cursor_ms = 1671375423000 + n
        store.save(name)
    files = sorted(os.listdir(tmp_path / "orgs"))
    assert len(files) == len(names) and all("/" not in f and not f.startswith(".") for f in files)
    before = (tmp_path / "orgs" / "provider%3Aabc.json").read_bytes()
    store.org("5f1b0c2e8d3a4b0012345678").cursor_ms += 1000
    store.save("5f1b0c2e8d3a4b0012345678")  # rewrites only its own org's file
    assert (tmp_path / "orgs" / "provider%3Aabc.json").read_bytes() == before
    assert set(snapshot(str(tmp_path))["orgs"]) == set(names)
    meta = read_orgs(str(tmp_path), names)
    assert [meta[n]["cursor"] for n in names[1:]] == [
        format_ms(1671375423000 + n) for n in range(1, len(names))
    ]


@pytest.mark.parametrize(
    "content",
    ["{", "[]", '{"orgs": []}', '{"orgs": {"_default": {"cursor": "nope"}}}',
     '{"orgs": {"_default": {"recent_ids": {"a": "b"}}}}'],
)  # fmt: skip
def test_state_store_rejects_a_garbage_legacy_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "state.json").write_text(content)
    with pytest.raises(StateError):
        StateStore(str(tmp_path)).load()
    assert (tmp_path / "state.json").read_text() == content  # untouched


@pytest.mark.parametrize(
    "content",
    ["{", "[]", '{"org": "other"}', '{"org": "_default", "cursor": "nope"}',
     '{"org": "_default", "recent_ids": {"a": "b"}}'],
)  # fmt: skip
def test_state_store_rejects_a_garbage_org_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "orgs").mkdir()
    (tmp_path / "orgs" / "_default.json").write_text(content)
    store = StateStore(str(tmp_path))
    store.load()
    with pytest.raises(StateError):
        store.org("_default")


def test_state_write_stays_cheap_with_many_ids(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    store.load()
    org = store.org("_default")
    for batch in range(100):  # 100k remembered ids
        org.recent.add([(f"{batch:03d}{i:021d}", batch * 1000 + i) for i in range(1000)])
    store.save("_default")  # fragments are built once here ...
    started = time.perf_counter()
    for _ in range(10):
        store.save("_default")  # ... and only joined afterwards
    assert (time.perf_counter() - started) / 10 < 0.25
    started = time.perf_counter()
    meta = read_orgs(str(tmp_path), ["_default"])["_default"]  # status: no id is parsed
    assert "recent_ids" not in meta and time.perf_counter() - started < 0.05
    store.close()


# -- logs ------------------------------------------------------------------------------------


def test_logger_redacts_and_formats_key_values() -> None:
    import io

    stream = io.StringIO()
    log = Logger("info", stream)
    log.set_secrets(["s3cr3t", "s3cr3t-longer"])
    log.info("run summary", org="_default", note="has s3cr3t-longer inside", n=3, t=0.5)
    log.debug("hidden")
    line = stream.getvalue().strip()
    assert "s3cr3t" not in line and "[redacted]" in line
    assert ' info di2siem run summary org=_default note="has [redacted] inside" n=3 t=0.500' in line


def test_logger_live_line_only_on_a_terminal_redrawn_under_log_lines() -> None:
    """The progress bar's live line: on a terminal (a pty here) it is drawn in place, cleared
    before a log line and drawn again after it, secrets redacted; elsewhere nothing."""
    import io
    import pty

    plain = io.StringIO()
    assert Logger("info", plain).live("42 shipped") is False and plain.getvalue() == ""
    main_fd, side_fd = pty.openpty()
    with os.fdopen(side_fd, "w") as terminal, os.fdopen(main_fd, "rb", buffering=0) as screen:
        log = Logger("info", terminal)
        log.set_secrets(["s3cr3t"])
        assert log.live("acme: 42 shipped s3cr3t") is True
        log.info("retrying")
        assert log.live("") is True
        shown = b""
        while not shown.endswith(b"\r\x1b[K"):
            shown += screen.read(4096)
    text = shown.decode()
    assert text.startswith("\r\x1b[Kacme: 42 shipped [redacted]\r\x1b[K")
    assert " info di2siem retrying\r\nacme: 42 shipped [redacted]" in text
    json_log = Logger("info", terminal)
    json_log.set_format("json")
    assert json_log.live("x") is False


def test_retry_policy_gives_up_rather_than_wait_past_the_deadline() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    policy = RetryPolicy(
        5, base_delay=1.0, max_delay=60.0, sleep=sleep, deadline=110.0, clock=lambda: now[0]
    )

    def throttled() -> None:
        raise RetryableError("JumpCloud answered 429", retry_after=4.0, side=Side.JUMPCLOUD)

    with pytest.raises(GaveUpError, match="run_time_budget_seconds"):
        policy.run(throttled, "JumpCloud page")
    assert slept == [4.0, 4.0]  # a third wait would end at 112 > 110
