"""What the end-to-end tests (the Molecule scenarios, the README's fleet dry run) need from the
host, and the one loud line they print when they cannot run here.

Both boot systemd-nspawn targets (molecule/shared/target.sh): root, systemd-nspawn, debootstrap,
ip, iptables, ssh and the venv's molecule. Without them the tests skip loudly: one line on the
terminal, the skip reason in pytest's summary (-ra), and .cache/molecule-not-run, which
`make test` repeats as its last line. DI2SIEM_REQUIRE_MOLECULE=1 (CI: .ci/run) makes it a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "molecule" / "shared" / "target.sh"
NOT_RUN_FILE = REPO / ".cache" / "molecule-not-run"  # read by `make test`
REQUIRED = os.environ.get("DI2SIEM_REQUIRE_MOLECULE") == "1"
_ANNOUNCED: list[str] = []


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    for tool in ("systemd-nspawn", "debootstrap", "molecule", "ip", "iptables", "ssh"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


def require_targets(capsys: pytest.CaptureFixture) -> None:
    """Return when nspawn targets can boot here; otherwise fail (DI2SIEM_REQUIRE_MOLECULE=1) or
    skip with the loud line."""
    missing = missing_requirements()
    if missing is None:
        return
    if REQUIRED:
        pytest.fail(
            f"Molecule scenarios need root, systemd-nspawn and debootstrap: {missing}"
            " (DI2SIEM_REQUIRE_MOLECULE=1)"
        )
    line = (
        f"MOLECULE SCENARIOS NOT RUN ({missing}): the role is untested end to end;"
        " run make test as root on Debian/Ubuntu (systemd-nspawn, debootstrap)"
    )
    if not _ANNOUNCED:
        _ANNOUNCED.append(line)
        NOT_RUN_FILE.parent.mkdir(parents=True, exist_ok=True)
        NOT_RUN_FILE.write_text(line + "\n", encoding="utf-8")
        with capsys.disabled():
            sys.stdout.write(f"\n{'!' * 20} {line} {'!' * 20}\n")
            sys.stdout.flush()
    pytest.skip(line)
