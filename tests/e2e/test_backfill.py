"""`di2siem backfill` against the simulators (real HTTP): the window [since, until) of the
chosen orgs shipped once, resumable after kill -9, the live state untouched, dry runs that
write nothing, and bad input refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ORG_A, ORG_B, Env, counts, di2siem_executable, legacy_config
from di2siem.timeutil import format_ms, now_ms, parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import generate_events

DAY = 86_400_000


@pytest.fixture
def msp() -> Iterator[JumpCloudSimulator]:
    from conftest import JC_KEY

    with JumpCloudSimulator(api_key=JC_KEY, org_ids=[ORG_A, ORG_B]) as sim:
        yield sim


@pytest.fixture
def fleet(tmp_path: Path, msp: JumpCloudSimulator, sink) -> Env:
    """Two orgs with events over the last four days; the live job ships the last day."""
    env = Env(tmp_path, msp, sink)
    end = now_ms() - 60_000
    env.events = []  # type: ignore[attr-defined]
    for seed, org in enumerate((ORG_A, ORG_B)):
        events = generate_events(160, end - 4 * DAY, end, seed=seed, org=org)
        msp.add_events(events, org=org)
        env.events.extend(events)  # type: ignore[attr-defined]
    cfg = legacy_config(msp.url, sink.url, batch_size=25)
    cfg["jumpcloud"]["org_ids"] = [ORG_A, ORG_B]
    env.write(cfg)
    return env


def in_window(env: Env, since: int, until: int) -> Counter:
    """id -> 1 for every event of the fixture whose time lies in [since, until)."""
    events = env.events  # type: ignore[attr-defined]
    return Counter(e["id"] for e in events if since <= parse_ms(e["timestamp"]) < until)


def live_files(env: Env) -> dict[str, bytes]:
    orgs = env.state_dir / "orgs"
    return {p.name: p.read_bytes() for p in sorted(orgs.iterdir())}


def test_window_of_two_orgs_shipped_once_live_state_untouched(fleet: Env, capsys) -> None:
    rc, _, err = fleet.run(capsys)
    assert rc == 0, err
    live_ids = Counter(fleet.shipped_ids())
    before = live_files(fleet)
    since, until = now_ms() - 3 * DAY, now_ms() - DAY
    window = ["--since", format_ms(since), "--until", format_ms(until)]
    fleet.cx.clear()
    rc, _, err = fleet.run(capsys, *window, command="backfill")
    assert rc == 0, err
    assert Counter(fleet.shipped_ids()) == in_window(fleet, since, until)
    assert len(fleet.shipped_ids()) > 100
    assert "backfill finished" in err and err.count("backfill summary") == 2
    assert live_files(fleet) == before, "the live state must stay byte for byte"
    # the live job behaves as if the backfill never happened
    fleet.cx.clear()
    rc, _, err = fleet.run(capsys)
    assert rc == 0 and fleet.shipped_ids() == []
    # the same command again: the finished job says so and ships nothing
    rc, _, err = fleet.run(capsys, *window, command="backfill")
    assert rc == 0 and "finished at" in err and fleet.shipped_ids() == []
    assert live_ids  # the live run shipped its own last day before all this


def test_one_org_one_service_relative_since_as_typed(fleet: Env, capsys) -> None:
    """`--since -2d` works as typed (it starts with a dash); --org and --service narrow it."""
    rc, _, err = fleet.run(
        capsys, "--since", "-2d", "--org", ORG_B, "--service", "all", command="backfill"
    )
    assert rc == 0, err
    shipped = fleet.shipped()
    assert shipped and {e["organization"] for e in shipped} == {ORG_B}
    oldest = min(parse_ms(e["jc_timestamp"]) for e in shipped)
    assert oldest >= now_ms() - 2 * DAY - 60_000
    assert not (fleet.state_dir / "orgs").exists() or not list((fleet.state_dir / "orgs").iterdir())


def test_resumes_after_kill_9_at_most_the_batch_in_flight_again(fleet: Env, capsys) -> None:
    since, until = now_ms() - 4 * DAY, now_ms()
    window = ["--since", format_ms(since), "--until", format_ms(until)]
    fleet.cx.inject_fault(None, count=-1, delay_s=0.05)  # slow sink: time to kill mid-way
    proc = subprocess.Popen(
        [di2siem_executable(), "backfill", "--config", str(fleet.path), *window],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while len(fleet.cx.received) < 100 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(fleet.shipped_ids())
    assert 0 < first < 320
    fleet.cx.clear_faults()
    rc, _, err = fleet.run(capsys, *window, command="backfill")
    assert rc == 0, err
    got = Counter(fleet.shipped_ids())
    assert set(got) == set(in_window(fleet, since, until))
    assert sum(got.values()) - len(got) <= 25, "more than one batch shipped twice"
    assert not (fleet.state_dir / "orgs").exists() or not list((fleet.state_dir / "orgs").iterdir())


def test_dry_run_counts_per_org_and_service_and_writes_nothing(fleet: Env, capsys) -> None:
    since, until = now_ms() - 3 * DAY, now_ms() - DAY
    window = ["--since", format_ms(since), "--until", format_ms(until), "--dry-run"]
    stored = fleet.events  # type: ignore[attr-defined]
    events = [e for e in stored if since <= parse_ms(e["timestamp"]) < until]

    def counted(*extra: str) -> dict[str, int]:
        rc, out, err = fleet.run(capsys, *window, *extra, command="backfill")
        assert rc == 0, err
        assert out.splitlines()[-1].startswith("dry run: ")
        pairs = (line.rsplit(" events=", 1) for line in out.splitlines() if " events=" in line)
        return {k: int(v) for k, v in pairs}

    every = counted()
    only = counted("--service", "directory")
    assert not fleet.state_dir.exists(), "a dry run writes nothing, not even the lock file"
    assert fleet.shipped_ids() == []
    for org in (ORG_A, ORG_B):
        mine = [e for e in events if e["organization"] == org]
        directory = sum(e["service"] == "directory" for e in mine)
        assert every[f"org={org}"] == len(mine) > directory > 0
        assert only[f"org={org}"] == only[f"org={org} service=directory"] == directory


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "-1d", "--until", "-2d"], "must be before --until"),
        (["--since", "yesterday"], "--since 'yesterday' is not a time"),
        (["--since", "2026-11-01T00:00:00"], "is not a time"),  # no zone
        (["--since", "-1d", "--org", "ffffffffffffffffffffffff"], "is not one of the config's"),
        (["--since", "-1d", "--until", format_ms(now_ms() + DAY)], "is in the future"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(fleet: Env, capsys, args, says) -> None:
    rc, _, err = fleet.run(capsys, *args, command="backfill")
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not fleet.state_dir.exists() and fleet.shipped_ids() == []


def test_window_past_retention_warns_what_cannot_be_fetched(fleet: Env, capsys) -> None:
    rc, _, err = fleet.run(capsys, "--since", "-100d", "--dry-run", command="backfill")
    assert rc == 0
    assert "past JumpCloud's 90-day retention" in err and "cannot be fetched" in err


def test_a_scheduled_run_leaves_the_state_to_a_backfill(fleet: Env, capsys) -> None:
    """While a backfill holds the lock, a run says so and exits 0 without touching the state
    (no stuck-holder warning, however long the backfill takes); afterwards it resumes."""
    from di2siem.state.lock import InstanceLock

    fleet.state_dir.mkdir(mode=0o700)
    lock = InstanceLock(str(fleet.state_dir))
    lock.acquire("backfill")
    try:
        rc, _, err = fleet.run(capsys)
    finally:
        lock.release()
    assert rc == 0 and "a backfill holds the lock" in err and fleet.shipped_ids() == []
    rc, _, err = fleet.run(capsys)
    assert rc == 0 and counts(err)["shipped"] > 0
