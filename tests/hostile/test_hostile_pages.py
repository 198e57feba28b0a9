"""Pages that can never parse whole (issue 15): an element that is no event (``null``, a
number, nested 995 deep, invalid UTF-8 inside it) in an otherwise well-formed page never
wedges its org. Its exact bytes go to the dead-letter directory once, the rest is shipped
exactly once, status and the metrics count it; a page whose structure is broken (truncated,
not an array) still stops the org loudly with its cursor kept. Real HTTP on loopback."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from conftest import CX_KEY, assert_no_secrets, console_run, summary
from di2siem.cli import main
from di2siem.timeutil import format_ms
from di2siem_sandbox import CoralogixSink
from hostile_jumpcloud import FakeJumpCloud
from test_hostile_data import events_at, write_config

DEEP = "[" * 995 + "]" * 995
ELEMENTS = {
    "null": "null",
    "number": "42",
    "array 995 deep": DEEP,
    "object 995 deep": '{"id":"x","a":' + DEEP + "}",
    "invalid UTF-8": '{"id":"' + "e" * 24 + '","message":"caf\udce9"}',
}


def dead_letters(state: Path) -> dict[str, bytes]:
    directory = state / "dead-letter"
    if not directory.exists():
        return {}
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def status_json(path: Path, capsys) -> dict:
    capsys.readouterr()
    main(["status", "--config", str(path), "--json"])
    out, err = capsys.readouterr()
    assert_no_secrets(out, err)
    return json.loads(out)


@pytest.mark.parametrize("kind", list(ELEMENTS))
def test_an_element_that_is_no_event_is_dead_lettered_once_and_the_rest_ships(
    tmp_path: Path, capsys, kind: str
) -> None:
    bad = ELEMENTS[kind]
    with FakeJumpCloud(page_size=6) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        normal = events_at(20, jc.now() - 2000, 5, seed=80)
        jc.add(*normal[:8], bad, *normal[8:])
        path = write_config(tmp_path, jc.url, sink.url, siem={"batch_size": 4})
        result = console_run(path)
        assert result.returncode == 0, result.stderr
        assert "unexpected error" not in result.stderr
        assert summary(result.stderr)["dead_lettered"] == "1"
        assert "dead-letter file" in result.stderr
        kept = dead_letters(tmp_path / "state")
        assert list(kept.values()) == [bad.encode("utf-8", "surrogateescape")], kept
        assert Counter(e["id"] for e in sink.events()) == Counter(e["id"] for e in normal)
        # the same element is read again (this API serves it to every query): a duplicate
        more = events_at(5, jc.now() - 500, 0.1, seed=81)
        jc.add(*more)
        result = console_run(path)
        assert result.returncode == 0, result.stderr
        assert "dead_lettered" not in summary(result.stderr)
        assert dead_letters(tmp_path / "state") == kept
        got = Counter(e["id"] for e in sink.events())
        assert got == Counter(e["id"] for e in [*normal, *more]), "lost or doubled"
        entry = status_json(path, capsys)["orgs"][0]
        assert entry["dead_lettered_total"] == 1 and entry["skipped_total"] == 1


def test_an_event_nested_900_deep_ships_whole_without_an_unexpected_error(
    tmp_path: Path,
) -> None:
    depth = 900
    with FakeJumpCloud(page_size=6) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        normal = events_at(6, jc.now() - 2000, 5, seed=82)
        deep = json.dumps(normal[3], separators=(",", ":"))[:-1]
        deep += ',"nested":' + "[" * depth + "]" * depth + "}"
        jc.add(*normal[:3], deep, *normal[4:])
        path = write_config(tmp_path, jc.url, sink.url, siem={"batch_size": 4})
        result = console_run(path)
        assert "unexpected error" not in result.stderr
        assert result.returncode == 0, result.stderr
        assert summary(result.stderr)["deep"] == "1"
        assert dead_letters(tmp_path / "state") == {}
        assert Counter(e["id"] for e in sink.events()) == Counter(e["id"] for e in normal)


def test_a_page_whose_structure_is_broken_still_stops_the_org_with_its_cursor_kept(
    tmp_path: Path,
) -> None:
    with FakeJumpCloud(page_size=6) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        normal = events_at(4, jc.now() - 2000, 5, seed=83)
        jc.add(*normal)
        path = write_config(tmp_path, jc.url, sink.url)
        assert console_run(path).returncode == 0
        before = (tmp_path / "state" / "orgs" / "_default.json").read_bytes()
        jc.add('{"id":"' + "a" * 24 + '","timestamp":')  # truncated: no event boundary
        result = console_run(path)
        assert result.returncode == 1, result.stderr
        assert "malformed answer (not JSON)" in result.stderr
        assert "unexpected error" not in result.stderr
        assert dead_letters(tmp_path / "state") == {}
        after = json.loads((tmp_path / "state" / "orgs" / "_default.json").read_bytes())
        assert after["cursor"] == json.loads(before)["cursor"]


def test_in_a_shared_query_the_element_stops_the_group_and_its_own_org_keeps_it(
    tmp_path: Path,
) -> None:
    orgs = [f"{n:024x}" for n in (1, 2, 3)]
    with FakeJumpCloud(page_size=4) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        now = jc.now()
        own: dict[str, list[dict]] = {org: [] for org in orgs}
        for n, at in enumerate(range(now - 600_000, now - 1000, 60_000)):
            org = orgs[n % 3]
            own[org].append(
                {"id": f"{n + 1:024x}", "organization": org, "timestamp": format_ms(at)}
            )
        for org in orgs:  # the first run: each org alone
            jc.add_for(org, own[org][0])
        path = write_config(
            tmp_path,
            jc.url,
            sink.url,
            siem={"batch_size": 2},
            jumpcloud={"org_ids": orgs, "max_requests_per_second": 100},
        )
        assert console_run(path).returncode == 0
        jc.add_for(orgs[1], "null")
        for org in orgs:
            jc.add_for(org, *own[org][1:])
        del jc.scopes[:]
        result = console_run(path)
        assert result.returncode == 0, result.stderr
        assert any(len(scope) == 3 for scope in jc.scopes), jc.scopes
        assert "no event (its org cannot be read)" in result.stderr
        kept = dead_letters(tmp_path / "state")
        assert len(kept) == 1 and next(iter(kept)).startswith(orgs[1]), kept
        got = Counter(e["id"] for e in sink.events())
        assert got == Counter(e["id"] for evs in own.values() for e in evs), "lost or doubled"
