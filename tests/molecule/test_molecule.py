"""The Molecule scenarios (molecule/<name>), run as pytest tests so that `make test` ends with
one plain pytest summary.

Every scenario runs `molecule test -s NAME` in a subprocess; all scenarios start together (the
run is mostly waiting for the minutely schedule) unless DI2SIEM_MOLECULE_PARALLEL=0. They start
as soon as pytest has collected them (tests/conftest.py), in the background of the collector
tests, which run first; these tests run last and wait for them. The full
output goes to .cache/molecule-logs/NAME.log; on failure the test shows its tail. Timings of
every Molecule action are printed. The scenarios run their playbooks with -v --diff: a log that
shows a sandbox credential fails the scenario. The default scenario runs with colour on, as
`molecule test` does in a terminal (molecule/README.md gives that command); the others
without.

Skipped loudly when not root or systemd-nspawn/debootstrap are missing (tests/support/end_to_end.py:
one "MOLECULE SCENARIOS NOT RUN" line, repeated by `make test` last), unless
DI2SIEM_REQUIRE_MOLECULE=1 (CI: .ci/run) turns that skip into a failure.
DI2SIEM_MOLECULE_SCENARIOS=default,trixie picks scenarios; DI2SIEM_MOLECULE_TIMEOUT (s, default
1800, counted from its start, so it includes the time shared with the collector tests) bounds
each one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from end_to_end import missing_requirements, require_targets

REPO = Path(__file__).resolve().parents[2]
MOLECULE_DIR = REPO / "molecule"
LOG_DIR = REPO / ".cache" / "molecule-logs"
TIMEOUT_S = float(os.environ.get("DI2SIEM_MOLECULE_TIMEOUT", "1800"))
PARALLEL = os.environ.get("DI2SIEM_MOLECULE_PARALLEL", "1") != "0"
# "[default > converge] Executing" (NO_COLOR) or "default ➜ converge: Executed: Successful"
ACTION = re.compile(
    r"(?:\[(?P<s1>\w+) > (?P<a1>\w+)\]|(?P<s2>\w+) \u279c (?P<a2>\w+):)"
    r" (?P<what>Executing|Executed: (?P<result>\w+))"
)
# The simulators' and the proxy's credentials the scenarios configure (molecule/shared/vars,
# molecule.yml).
SECRETS = (
    "sandbox-jumpcloud-key",
    "sandbox-coralogix-key",
    "sandbox-proxy-password",
    "5a4d3c2b-1f0e-4d9c-8b7a-6f5e4d3c2b1a",  # Splunk HEC token (timer)
    "c2FuZGJveC1rZXktaWQ6c2FuZGJveC1lbGFzdGljc2VhcmNoLWtleQ==",  # Elasticsearch API key (trixie)
    "sandbox-sentinel-secret",  # Sentinel client secret (fleet)
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Run as `molecule test` runs in a colour terminal (molecule/README.md gives the command), so
# nothing in the scenarios depends on plain output; the others run without colour.
COLOUR_SCENARIOS = frozenset(("default",))
NO_COLOUR = ("NO_COLOR", "ANSIBLE_NOCOLOR", "PY_COLORS", "ANSIBLE_FORCE_COLOR")


def _scenarios() -> list[str]:
    wanted = os.environ.get("DI2SIEM_MOLECULE_SCENARIOS")
    found = sorted(p.parent.name for p in MOLECULE_DIR.glob("*/molecule.yml"))
    if wanted:
        return [s for s in wanted.split(",") if s]
    return found


class Run:
    """One `molecule test -s NAME` in the background, its output streamed to a log file with
    the start and end time of every action."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.log_path = LOG_DIR / f"{scenario}.log"
        self.actions: list[tuple[str, float, str]] = []  # (action, seconds, result)
        self.rc: int | None = None
        self.elapsed = 0.0
        self.timed_out = False
        self._started: dict[str, float] = {}
        self.proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name=f"molecule-{scenario}", daemon=True)

    def start(self) -> Run:
        self._thread.start()
        return self

    def wait(self) -> Run:
        self._thread.join()
        return self

    def _run(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        if self.scenario in COLOUR_SCENARIOS:  # as on a colour terminal
            env = {k: v for k, v in os.environ.items() if k not in NO_COLOUR}
            env.update(PY_COLORS="1", ANSIBLE_FORCE_COLOR="1")
        else:
            env = dict(os.environ, NO_COLOR="1", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
            env.setdefault("ANSIBLE_NOCOLOR", "1")
        start = time.monotonic()
        with self.log_path.open("w", encoding="utf-8") as log:
            proc = self.proc = subprocess.Popen(
                ["molecule", "test", "-s", self.scenario],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
            timer = threading.Timer(TIMEOUT_S, self._kill, args=(proc,))
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    self._track(ANSI.sub("", line))
                self.rc = proc.wait()
            finally:
                timer.cancel()
            if self.timed_out:
                # Killed mid-sequence: its own destroy never ran; the target must not linger.
                log.write(f"\n== timed out after {TIMEOUT_S:.0f} s: molecule destroy\n")
                log.flush()
                subprocess.run(
                    ["molecule", "destroy", "-s", self.scenario],
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                    check=False,
                )
        self.elapsed = time.monotonic() - start

    def _kill(self, proc: subprocess.Popen) -> None:
        self.timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    def _track(self, line: str) -> None:
        match = ACTION.search(line)
        if not match or (match["s1"] or match["s2"]) != self.scenario:
            return
        action = match["a1"] or match["a2"]
        now = time.monotonic()
        if match["what"] == "Executing":
            self._started[action] = now
        elif action in self._started:
            self.actions.append((action, now - self._started.pop(action), match["result"]))

    def timings(self) -> str:
        rows = [f"  {a:<12} {s:7.1f} s  {r}" for a, s, r in self.actions]
        head = f"molecule scenario {self.scenario}: rc={self.rc} total {self.elapsed:.1f} s"
        return "\n".join([head, *rows])

    def tail(self, lines: int = 150) -> str:
        text = ANSI.sub("", self.log_path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(text.splitlines()[-lines:])


_RUNS: dict[str, Run] = {}


@atexit.register
def _stop_leftover_runs() -> None:
    """An interrupted pytest must not leave Molecule running (the next run's destroy cleans
    the targets)."""
    for run in _RUNS.values():
        if run.proc is not None and run.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGTERM)


def start_early(scenarios: list[str]) -> None:
    """Start the selected scenarios now (at collection), when they can run and run together."""
    if PARALLEL and scenarios and missing_requirements() is None:
        for name in scenarios:
            _RUNS.setdefault(name, Run(name).start())


def _run_for(scenario: str, scenarios: list[str]) -> Run:
    if scenario not in _RUNS:
        if PARALLEL:
            for name in scenarios:
                _RUNS.setdefault(name, Run(name).start())
        else:
            _RUNS[scenario] = Run(scenario).start()
    return _RUNS[scenario].wait()


SCENARIOS = _scenarios()


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, capsys: pytest.CaptureFixture) -> None:
    require_targets(capsys)
    run = _run_for(scenario, SCENARIOS)
    with capsys.disabled():
        sys.stdout.write("\n" + run.timings() + "\n")
        sys.stdout.flush()
    if run.timed_out:
        pytest.fail(f"molecule test -s {scenario} timed out after {TIMEOUT_S:.0f} s\n{run.tail()}")
    assert run.rc == 0, f"molecule test -s {scenario} failed (log {run.log_path}):\n{run.tail()}"
    # Every playbook runs with -v --diff (provisioner options): no credential may show.
    log = run.log_path.read_text(encoding="utf-8", errors="replace")
    plain = ANSI.sub("", log)
    leaked = [s for s in SECRETS if s in log or s in plain]
    assert not leaked, f"{len(leaked)} sandbox credential(s) in the Molecule output {run.log_path}"
