"""State that lies (issue 15): a cursor or floor ahead of time, more recent ids than the
memory bound, files too large to read, org ids that are paths, a corrupt org file. Each is
refused in one line naming the field or file and the fix, or capped, and never costs an
event: real files in state_dir, the real CLI (``state export/import``, ``run``, ``status``),
a JumpCloud of our own with a clock of its own and the Coralogix simulator on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import CX_KEY, assert_no_secrets, di2siem_executable
from di2siem.cli import main
from di2siem.config import ORG_ID_PATTERN
from di2siem.engine.window import AHEAD_TOLERANCE_MS
from di2siem.state.handoff import FORMAT
from di2siem.state.layout import max_org_file_bytes
from di2siem.timeutil import FUTURE_MARGIN_MS, format_ms, now_ms
from di2siem_sandbox import CoralogixSink
from hostile_jumpcloud import FakeJumpCloud
from test_hostile_data import write_config

ORGS = [f"{0x5EED + n:024x}" for n in range(3)]
A, B, C = ORGS
MIN = 60_000
NOWHERE = "http://127.0.0.1:9"  # commands that never reach JumpCloud or the SIEM


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert_no_secrets(out, err)
    return rc, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def org_path(tmp: Path, org: str) -> Path:
    return tmp / "state" / "orgs" / f"{org}.json"


def ids_at(n: int, newest: int, step_ms: int, first: int = 1) -> dict[str, int]:
    """n ids (24 hex digits, as JumpCloud's) one step apart, the last at ``newest``."""
    return {f"{first + i:024x}": newest - (n - 1 - i) * step_ms for i in range(n)}


def write_org_file(
    tmp: Path, org: str, cursor: int | None, floor: int | None, ids: dict[str, int]
) -> Path:
    """An org file as the collector lays it out (state.OrgState.json: recent_ids last)."""
    path = org_path(tmp, org)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {
        "version": 2,
        "org": org,
        "served": None,
        "cursor": None if cursor is None else format_ms(cursor),
        "floor": None if floor is None else format_ms(floor),
        "recent_ids": ids,
    }
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return path


def set_in_org_file(path: Path, **times: int) -> None:
    """Hand-edit the org file's cursor/floor, everything else (and its order) as it was."""
    doc = json.loads(path.read_text())
    doc.update({k: format_ms(v) for k, v in times.items()})
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def export_file(tmp: Path, org: str, name: str = "export.json", **fields: Any) -> Path:
    doc = {
        "format": FORMAT,
        "version": 1,
        "org": org,
        "exported_at": format_ms(now_ms()),
        "di2siem_version": "0",
        "cursor": None,
        "floor": None,
        "recent_ids": {},
        **fields,
    }
    path = tmp / name
    path.write_text(json.dumps(doc, separators=(",", ":")))
    return path


def events_for(org: str, first: int, times: list[int]) -> list[dict[str, Any]]:
    return [
        {"id": f"{first + i:024x}", "organization": org, "timestamp": format_ms(at)}
        for i, at in enumerate(times)
    ]


def shipped(sink: CoralogixSink) -> Counter:
    return Counter(e["id"] for e in sink.events())


def msp_config(tmp: Path, jc_url: str, sink_url: str, orgs=ORGS, **top: Any) -> Path:
    jumpcloud = {"org_ids": list(orgs), "max_requests_per_second": 100}
    return write_config(tmp, jc_url, sink_url, jumpcloud=jumpcloud, **top)


# -- 1. import: no position past this host's clock + FUTURE_MARGIN_MS ---------------------


@pytest.mark.parametrize("key", ["cursor", "floor"])
def test_import_refuses_a_position_past_the_margin_and_takes_one_inside_it(
    tmp_path: Path, capsys, key: str
) -> None:
    path = msp_config(tmp_path, NOWHERE, NOWHERE)
    now = now_ms()
    org_file = write_org_file(
        tmp_path, A, now - 60 * MIN, now - 61 * MIN, ids_at(3, now - 60 * MIN, 1)
    )
    before = org_file.read_bytes()
    ahead = format_ms(now + FUTURE_MARGIN_MS + MIN)
    doc = export_file(tmp_path, A, **{key: ahead})
    rc, out, err = cli(capsys, "state", "import", "--config", str(path), str(doc))
    assert rc == 2 and out == ""
    assert f"{key} {ahead} lies more than 5 minutes past this host's clock" in one_line(err)
    assert "nothing changed" in err and f"Set {key} to the last time really shipped" in err
    assert org_file.read_bytes() == before
    assert sorted(os.listdir(org_file.parent)) == [org_file.name]
    # one minute ahead is clock skew between two hosts: installed as it is
    inside = format_ms(now + MIN)
    doc = export_file(tmp_path, A, **{key: inside})
    rc, _, err = cli(capsys, "state", "import", "--config", str(path), str(doc))
    assert rc == 0, err
    assert json.loads(org_file.read_text())[key] == inside


# -- 2. run: a cursor or floor ahead of JumpCloud's clock fails that org, loudly -----------


@pytest.mark.parametrize("key", ["cursor", "floor"])
def test_a_position_ahead_of_jumpcloud_fails_only_its_org_until_the_operator_fixes_it(
    tmp_path: Path, capsys, key: str
) -> None:
    with FakeJumpCloud(page_size=50) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        now = jc.now()
        times = [now - 9 * MIN, now - 8 * MIN, now - 7 * MIN]
        first = {org: events_for(org, 0x100 * (n + 1), times) for n, org in enumerate(ORGS)}
        for org, evs in first.items():
            jc.add_for(org, *evs)
        path = msp_config(tmp_path, jc.url, sink.url)
        assert cli(capsys, "run", "--config", str(path))[0] == 0
        a_file = org_path(tmp_path, A)
        real = json.loads(a_file.read_text())
        assert real["cursor"] == first[A][-1]["timestamp"]
        ahead = now + 10 * MIN
        set_in_org_file(a_file, **{key: ahead})
        times = [now - 3 * MIN, now - 2 * MIN]
        later = {org: events_for(org, 0x100 * (n + 1) + 0x10, times) for n, org in enumerate(ORGS)}
        for org, evs in later.items():
            jc.add_for(org, *evs)

        for attempt in range(2):  # never pulled back to now, whatever the number of runs
            asked = len(jc.queries)
            rc, _, err = cli(capsys, "run", "--config", str(path))
            assert rc == 1, err
            assert (
                f"state of org {A}: {key} {format_ms(ahead)} is ahead of JumpCloud's clock" in err
            )
            assert f"di2siem state export --org {A}" in err and "state import --force" in err
            assert "unexpected error" not in err
            served = list(zip(jc.scopes[asked:], jc.queries[asked:]))
            assert not [q for scope, q in served if A in scope and q["limit"] > 1], "A was read"
            if attempt == 0:
                # A was caught up (its last run ok): planned into the others' shared query,
                # it failed alone as its member and the query went on for B and C
                assert {B, C} in [set(scope) for scope, q in served if q["limit"] > 1], served
            kept = json.loads(a_file.read_text())
            assert (kept["cursor"], kept["floor"], kept["recent_ids"]) == (
                format_ms(ahead) if key == "cursor" else real["cursor"],
                format_ms(ahead) if key == "floor" else real["floor"],
                real["recent_ids"],
            )
            expected = first[A] + first[B] + first[C] + later[B] + later[C]
            assert shipped(sink) == Counter(e["id"] for e in expected)

        # the fix the line names: export, set the position to the last time really shipped,
        # import --force (the state here is "newer"), run
        handoff = tmp_path / "a.json"
        rc, _, err = cli(
            capsys, "state", "export", "--config", str(path), "--org", A, "--output", str(handoff)
        )
        assert rc == 0, err
        doc = json.loads(handoff.read_text())
        assert doc[key] == format_ms(ahead)
        doc.update(cursor=real["cursor"], floor=real["floor"])
        handoff.write_text(json.dumps(doc))
        rc, _, err = cli(capsys, "state", "import", "--config", str(path), str(handoff))
        assert rc == 2 and "this host's state is newer" in one_line(err)
        rc, _, err = cli(capsys, "state", "import", "--config", str(path), "--force", str(handoff))
        assert rc == 0 and "went BACK" in err, err
        rc, _, err = cli(capsys, "run", "--config", str(path))
        assert rc == 0, err
        everything = [e for evs in (*first.values(), *later.values()) for e in evs]
        assert shipped(sink) == Counter(e["id"] for e in everything), "lost or doubled"


def test_an_imported_cursor_inside_the_margin_waits_for_jumpcloud_s_clock_then_ships(
    tmp_path: Path, capsys
) -> None:
    with FakeJumpCloud(page_size=50) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        path = msp_config(tmp_path, jc.url, sink.url, orgs=[A])
        (tmp_path / "state").mkdir(mode=0o700)
        cursor = now_ms() + MIN  # the exporting host's clock was a minute ahead
        doc = export_file(tmp_path, A, cursor=format_ms(cursor), floor=format_ms(cursor - 1))
        assert cli(capsys, "state", "import", "--config", str(path), str(doc))[0] == 0
        before = org_path(tmp_path, A).read_text()
        after = events_for(A, 0x900, [cursor + 5_000, cursor + 6_000])
        jc.add_for(A, *events_for(A, 0x800, [cursor - 20_000]), *after)  # shipped, per the file
        rc, _, err = cli(capsys, "run", "--config", str(path))
        assert rc == 1 and f"state of org {A}: cursor {format_ms(cursor)} is ahead" in err
        assert (
            json.loads(org_path(tmp_path, A).read_text())["cursor"] == json.loads(before)["cursor"]
        )
        assert shipped(sink) == Counter()
        jc.skew_ms = 2 * MIN  # JumpCloud's clock passes the cursor
        rc, _, err = cli(capsys, "run", "--config", str(path))
        assert rc == 0, err
        assert shipped(sink) == Counter(e["id"] for e in after)


def test_a_cursor_within_the_tolerance_of_jumpcloud_s_clock_is_served(
    tmp_path: Path, capsys
) -> None:
    with FakeJumpCloud(page_size=50) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        path = msp_config(tmp_path, jc.url, sink.url, orgs=[A])
        # the Date header has whole seconds: half a second ahead is clock resolution
        cursor = jc.now() + AHEAD_TOLERANCE_MS // 4
        write_org_file(tmp_path, A, cursor, None, {})
        rc, _, err = cli(capsys, "run", "--config", str(path))
        assert rc == 0 and "ahead of JumpCloud's clock" not in err, err
        assert json.loads(org_path(tmp_path, A).read_text())["cursor"] == format_ms(cursor)
        assert sink.events() == []


# -- 3. legacy state.end_time, migration of an older state.json ----------------------------


def test_a_legacy_end_time_past_the_margin_is_a_config_error(tmp_path: Path, capsys) -> None:
    ahead = format_ms(now_ms() + FUTURE_MARGIN_MS + MIN)
    path = write_config(tmp_path, NOWHERE, NOWHERE, state={"end_time": ahead})
    for command in ("check", "run"):
        extra = ["--offline"] if command == "check" else []
        rc, _, err = cli(capsys, command, "--config", str(path), *extra)
        assert rc == 2, err
        assert "state.end_time" in err and f"{ahead} lies in the future" in err
        assert not (tmp_path / "state").exists()
    inside = format_ms(now_ms() + MIN)
    path = write_config(tmp_path, NOWHERE, NOWHERE, state={"end_time": inside})
    assert cli(capsys, "check", "--config", str(path), "--offline")[0] == 0


def test_migration_keeps_a_future_cursor_and_caps_ids_then_the_org_fails_loudly(
    tmp_path: Path, capsys
) -> None:
    with FakeJumpCloud(page_size=50) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        path = write_config(tmp_path, jc.url, sink.url, recent_ids_max=1000)
        future = jc.now() + 60 * MIN
        ids = ids_at(3000, future - MIN, 10)
        (tmp_path / "state").mkdir(mode=0o700)
        legacy = {
            "version": 1,
            "orgs": {"_default": {"cursor": format_ms(future), "recent_ids": ids}},
        }
        (tmp_path / "state" / "state.json").write_text(json.dumps(legacy))
        jc.add(*events_for("x", 0x7000, [jc.now() - MIN]))
        # the first command to take the lock migrates: here an export
        handoff = tmp_path / "d.json"
        export = ["state", "export", "--config", str(path), "--org", "_default"]
        assert cli(capsys, *export, "--output", str(handoff))[0] == 0
        assert (tmp_path / "state" / "state.json.v1-migrated").exists()
        newest = sorted(ids.items(), key=lambda kv: kv[1])[-1000:]
        for doc in (
            json.loads(org_path(tmp_path, "_default").read_text()),
            json.loads(handoff.read_text()),
        ):
            assert doc["cursor"] == format_ms(future)  # kept as it was
            assert doc["recent_ids"] == dict(newest)
            assert doc["floor"] == format_ms(newest[0][1] - 10)  # the newest dropped
        rc, _, err = cli(capsys, "run", "--config", str(path))
        assert rc == 1 and f"cursor {format_ms(future)} is ahead of JumpCloud's clock" in err
        assert json.loads(org_path(tmp_path, "_default").read_text())["cursor"] == format_ms(future)
        assert sink.events() == []


# -- 4. memory: recent ids capped at recent_ids_max, files over the bound never read ---------


def test_an_import_with_far_more_ids_keeps_the_newest_and_the_floor_rises(
    tmp_path: Path, capsys
) -> None:
    path = msp_config(tmp_path, NOWHERE, NOWHERE, recent_ids_max=1000)
    (tmp_path / "state").mkdir(mode=0o700)
    newest = now_ms() - MIN
    ids = ids_at(20_000, newest, 7)
    doc = export_file(tmp_path, A, cursor=format_ms(newest), recent_ids=ids)
    assert doc.stat().st_size <= max_org_file_bytes(1000)
    rc, _, err = cli(capsys, "state", "import", "--config", str(path), str(doc))
    assert rc == 0 and "recent_ids 1000" in err, err
    installed = json.loads(org_path(tmp_path, A).read_text())
    kept = sorted(ids.items(), key=lambda kv: kv[1])[-1000:]
    assert installed["recent_ids"] == dict(kept)
    assert installed["floor"] == format_ms(kept[0][1] - 7)
    assert installed["cursor"] == format_ms(newest)


# runs the command in a fresh interpreter and prints its child's peak RSS: a child forked
# from pytest itself would count pytest's pages (Linux keeps the high-water mark across exec)
MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss_kib(args: list[str]) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of the console script with ARGS."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, di2siem_executable(), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_no_secrets(result.stdout, result.stderr)
    rc, peak = result.stdout.split()
    return int(rc), result.stderr, int(peak)


def write_many_ids(path: Path, org: str, n: int, newest: int, layout: str = "export") -> None:
    """An export (or, with layout="org", an org file) of ``n`` recent ids 1 ms apart."""
    head = f'"format":"{FORMAT}","version":1' if layout == "export" else '"version":2'
    body = ",".join(f'"{i:024x}":{newest - n + i}' for i in range(1, n + 1))
    path.write_text(
        f'{{{head},"org":"{org}","cursor":"{format_ms(newest)}","floor":null,'
        f'"recent_ids":{{{body}}}}}\n'
    )


def test_import_memory_stays_bounded_and_a_file_over_the_bound_is_never_read(
    tmp_path: Path,
) -> None:
    maximum = 20_000
    bound = max_org_file_bytes(maximum)  # 128 B per id + 1 MiB
    path = msp_config(tmp_path, NOWHERE, NOWHERE, recent_ids_max=maximum)
    (tmp_path / "state").mkdir(mode=0o700)
    newest = now_ms() - MIN
    small, large, huge = tmp_path / "small.json", tmp_path / "large.json", tmp_path / "huge.json"
    write_many_ids(small, A, 10, newest)
    write_many_ids(large, A, 80_000, newest)  # 4 x recent_ids_max, just under the bound
    write_many_ids(huge, A, 740_000, newest)  # 30 MB
    assert large.stat().st_size <= bound < huge.stat().st_size
    assert huge.stat().st_size > 30_000_000

    rc, err, baseline = peak_rss_kib(["state", "import", "--config", str(path), str(small)])
    assert rc == 0, err
    rc, err, refused = peak_rss_kib(["state", "import", "--config", str(path), str(huge)])
    assert rc == 2
    line = one_line(err)
    assert f"is {huge.stat().st_size} bytes, more than an export of recent_ids_max=20000" in line
    assert "not read" in line
    assert refused < baseline + 8 * 1024, (baseline, refused)  # 30 MB never read
    rc, err, allowed = peak_rss_kib(["state", "import", "--config", str(path), str(large)])
    assert rc == 0 and "recent_ids 20000" in err, err
    # reading costs a few times the file's size (about 5 here), so the bound on the size is
    # the bound on memory whatever the file holds
    assert allowed < baseline + 8 * bound // 1024, (baseline, allowed, bound)
    assert len(json.loads(org_path(tmp_path, A).read_text())["recent_ids"]) == maximum


def test_a_run_caps_an_org_file_with_too_many_ids_and_never_reads_one_over_the_bound(
    tmp_path: Path,
) -> None:
    with FakeJumpCloud(page_size=50) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        path = msp_config(tmp_path, jc.url, sink.url, orgs=[A, B], recent_ids_max=1000)
        now = jc.now()
        cursor = now - 5 * MIN
        ids = ids_at(5000, cursor, 10)
        write_org_file(tmp_path, A, cursor, None, ids)
        huge = org_path(tmp_path, B)
        write_many_ids(huge, B, 740_000, cursor, layout="org")
        new = {
            org: events_for(org, 0x10_000 * (n + 1), [now - 2 * MIN])
            for n, org in enumerate([A, B])
        }
        for org, evs in new.items():
            jc.add_for(org, *evs)
        rc, err, with_huge = peak_rss_kib(["run", "--config", str(path)])
        assert rc == 1, err
        assert f"{huge} is {huge.stat().st_size} bytes, more than {max_org_file_bytes(1000)}" in err
        assert f"move it aside to start org {B} over, or raise recent_ids_max" in err
        assert shipped(sink) == Counter(e["id"] for e in new[A])
        capped = json.loads(org_path(tmp_path, A).read_text())
        assert len(capped["recent_ids"]) <= 1000
        dropped = sorted(ids.values())[-1001]  # loaded: the newest 1000, the floor at the 1001st
        assert capped["floor"] >= format_ms(dropped)
        reads = [q for scope, q in zip(jc.scopes, jc.queries) if scope == (A,) and q["limit"] > 1]
        assert reads and reads[0]["start_time"] == format_ms(dropped + 1)  # floor + 1 ms
        huge.unlink()  # the operator moves it aside: B starts over
        rc, err, without = peak_rss_kib(["run", "--config", str(path)])
        assert rc == 0, err
        assert with_huge < without + 8 * 1024, (with_huge, without)  # 30 MB never read
        assert shipped(sink) == Counter(e["id"] for e in new[A] + new[B])


# -- 5. org ids: never a path, never unbounded ----------------------------------------------

BAD_IDS = {"300 characters": "a" * 300, "NUL": "aa\x00bb", "slash": "aa/bb", "dot dot": ".."}


@pytest.mark.parametrize("kind", list(BAD_IDS))
def test_an_org_id_that_is_no_id_is_refused_in_config_and_on_import(
    tmp_path: Path, capsys, kind: str
) -> None:
    bad = BAD_IDS[kind]
    assert not ORG_ID_PATTERN.fullmatch(bad)
    path = write_config(tmp_path, NOWHERE, NOWHERE, jumpcloud={"org_ids": [A, bad]})
    rc, _, err = cli(capsys, "check", "--config", str(path), "--offline")
    assert rc == 2 and "jumpcloud.org_ids[1]" in one_line(err), err
    assert not (tmp_path / "state").exists()
    path = msp_config(tmp_path, NOWHERE, NOWHERE)
    (tmp_path / "state").mkdir(mode=0o700)
    doc = export_file(tmp_path, bad, cursor=format_ms(now_ms() - MIN))
    rc, _, err = cli(capsys, "state", "import", "--config", str(path), str(doc))
    assert rc == 2
    assert (
        f"org {json.dumps(bad)} must be _default, provider:<provider id> or an org id of 1 to 64"
        in one_line(err)
    )
    assert "nothing changed" in err
    assert os.listdir(tmp_path / "state") == []  # no orgs/, nothing anywhere
    assert not (tmp_path / "aa").exists() and not (tmp_path / "state.json").exists()


# -- 6. the format version is the integer 1 -------------------------------------------------


@pytest.mark.parametrize("version", [True, "1", 2, 1.0, None])
def test_an_import_whose_version_is_not_the_integer_1_is_refused(
    tmp_path: Path, capsys, version: Any
) -> None:
    path = msp_config(tmp_path, NOWHERE, NOWHERE)
    (tmp_path / "state").mkdir(mode=0o700)
    doc = export_file(tmp_path, A, version=version, cursor=format_ms(now_ms() - MIN))
    rc, _, err = cli(capsys, "state", "import", "--config", str(path), str(doc))
    assert rc == 2
    assert f"has format version {json.dumps(version)}; this di2siem" in one_line(err)
    assert os.listdir(tmp_path / "state") == []


# -- 7. one corrupt org file costs only that org in status ----------------------------------


def test_status_lists_the_other_orgs_and_flags_the_corrupt_one(tmp_path: Path, capsys) -> None:
    with FakeJumpCloud(page_size=50) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        now = jc.now()
        for n, org in enumerate(ORGS):
            jc.add_for(org, *events_for(org, 0x100 * (n + 1), [now - 3 * MIN, now - 2 * MIN]))
        path = msp_config(tmp_path, jc.url, sink.url)
        assert cli(capsys, "run", "--config", str(path))[0] == 0
    files = {org: json.loads(org_path(tmp_path, org).read_text()) for org in ORGS}
    org_path(tmp_path, B).write_bytes(b'{"version":2,"org":"' + B.encode() + b'","cursor":')
    rc, out, _ = cli(capsys, "status", "--config", str(path), "--json")
    assert rc == 1
    report = json.loads(out)
    assert [e["org"] for e in report["orgs"]] == ORGS and report["healthy"] is False
    by_org = {e["org"]: e for e in report["orgs"]}
    for org in (A, C):
        entry = by_org[org]
        assert entry["healthy"] is True and entry.get("health") != "unreadable", entry
        assert entry["cursor"] == files[org]["cursor"] and entry["shipped_total"] == 2
    flagged = by_org[B]
    assert flagged["health"] == "unreadable" and flagged["healthy"] is False
    assert f"{org_path(tmp_path, B)} is not valid JSON; move it aside" in flagged["error"]
    assert str(org_path(tmp_path, B)) in report["error"]
    rc, out, _ = cli(capsys, "status", "--config", str(path))
    assert rc == 1
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:4]}
    assert rows == {A: "yes", B: "NO", C: "yes"}, out
    assert f"{B}: state file unreadable: {org_path(tmp_path, B)} is not valid JSON" in out
    assert out.splitlines()[-1].endswith("status: NOT healthy (max lag 600s)")


# -- 8. the handoff between hosts keeps the same rules --------------------------------------


def test_a_handoff_to_another_host_is_capped_and_refuses_a_future_position(
    tmp_path: Path, capsys
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    with FakeJumpCloud(page_size=1000) as jc, CoralogixSink(api_key=CX_KEY) as sink:
        now = jc.now()
        cursor = now - 3 * MIN
        ids = ids_at(1500, cursor, 100)  # all within the overlap window behind the cursor
        write_org_file(old, A, cursor, None, ids)
        old_path = msp_config(old, jc.url, sink.url, orgs=[A], recent_ids_max=5000)
        new_path = msp_config(new, jc.url, sink.url, orgs=[A], recent_ids_max=1000)
        (new / "state").mkdir(mode=0o700)
        handoff = tmp_path / "a.json"
        export = [
            "state",
            "export",
            "--config",
            str(old_path),
            "--org",
            A,
            "--output",
            str(handoff),
        ]
        assert cli(capsys, *export)[0] == 0
        rc, _, err = cli(capsys, "state", "import", "--config", str(new_path), str(handoff))
        assert rc == 0 and "recent_ids 1000" in one_line(err), err
        installed = json.loads(org_path(new, A).read_text())
        kept = sorted(ids.items(), key=lambda kv: kv[1])[-1000:]
        assert installed["recent_ids"] == dict(kept)
        assert installed["floor"] == format_ms(kept[0][1] - 100)
        # the old host's clock ran ahead: its file says so, the new host refuses to install it
        set_in_org_file(org_path(old, A), cursor=now + 30 * MIN)
        assert cli(capsys, *export)[0] == 0
        before = org_path(new, A).read_bytes()
        rc, _, err = cli(
            capsys, "state", "import", "--config", str(new_path), "--force", str(handoff)
        )
        assert rc == 2 and "cursor" in one_line(err) and "lies more than 5 minutes" in err
        assert org_path(new, A).read_bytes() == before
        # the new host serves the org: what the old one shipped (every id, dropped or kept,
        # is served again) is not sent again, what is new is sent once
        jc.add_for(A, *[
            {"id": i, "organization": A, "timestamp": format_ms(at)} for i, at in ids.items()
        ])  # fmt: skip
        fresh = events_for(A, 0x90_000, [now - 2 * MIN, now - MIN])
        jc.add_for(A, *fresh)
        rc, _, err = cli(capsys, "run", "--config", str(new_path))
        assert rc == 0, err
        assert shipped(sink) == Counter(e["id"] for e in fresh)
