"""What the interop tests (tests/interop/) need that the venv or the machine may lack: the
official client libraries (the dev extra) and Debian's rsyslog (the Makefile's APT_DEPS).

Without them a test skips loudly: one line on the terminal and the reason in pytest's summary
(-ra). In CI (.ci/run sets DI2SIEM_REQUIRE_INTEROP=1) a missing piece is a failure instead:
these tests are the only check of our simulators against code no one here wrote.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

import pytest

REQUIRED = os.environ.get("DI2SIEM_REQUIRE_INTEROP") == "1"
_ANNOUNCED: set[str] = set()


def unavailable(what: str, why: str, capsys: pytest.CaptureFixture | None = None) -> None:
    """Fail (DI2SIEM_REQUIRE_INTEROP=1) or skip with one loud line naming WHAT is missing."""
    line = f"INTEROP CHECK NOT RUN ({what}: {why}): our simulator is unchecked against it"
    if REQUIRED:
        pytest.fail(line + " (DI2SIEM_REQUIRE_INTEROP=1)")
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        message = f"\n{'!' * 20} {line} {'!' * 20}\n"
        if capsys is None:
            sys.stderr.write(message)
        else:
            with capsys.disabled():
                sys.stdout.write(message)
                sys.stdout.flush()
    pytest.skip(line)


def official(module: str, capsys: pytest.CaptureFixture | None = None) -> ModuleType:
    """Import an official client library of the dev extra, or say loudly that it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(module, f"not importable ({exc}); pip install -e '.[dev]'", capsys)
        raise  # unreachable: unavailable() always raises
