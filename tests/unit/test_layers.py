"""tools/check_layers.py (run by make lint) finds what it must: a cycle hidden in a function,
an import up the layers, a module too long; and a package that keeps the rules passes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check_layers.py"
spec = importlib.util.spec_from_file_location("check_layers", TOOL)
assert spec and spec.loader
check_layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_layers)


def package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "di2siem"
    for name, text in {"__init__.py": "", **files}.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return pkg


def test_a_package_that_keeps_the_rules_passes(tmp_path: Path) -> None:
    pkg = package(
        tmp_path,
        {
            "cli.py": "from .engine.stream import run\nfrom di2siem import timeutil\n",
            "engine/__init__.py": "",
            "engine/stream.py": "from ..source import client\nfrom . import window\n",
            "engine/window.py": "from ..timeutil import now_ms\n",
            "source/__init__.py": "",
            "source/client.py": "import di2siem.timeutil\n",
            "timeutil.py": "def now_ms(): return 0\n",
        },
    )
    assert check_layers.breaches(pkg) == []


def test_cycles_upward_imports_and_long_modules_are_named(tmp_path: Path) -> None:
    pkg = package(
        tmp_path,
        {
            "config.py": "def load():\n    from .state import store\n",  # up, and a cycle
            "state/__init__.py": "",
            "state/store.py": "from ..config import load\n",
            "timeutil.py": "x = 1\n" * (check_layers.MAX_LINES + 1),
            "mystery.py": "",
        },
    )
    problems = check_layers.breaches(pkg)
    text = "\n".join(problems)
    assert "config.py: imports state.store from a layer above it" in text
    assert "import cycle: config -> state.store" in text
    assert f"timeutil.py: {check_layers.MAX_LINES + 1} lines" in text
    assert "mystery.py: in no layer" in text
    assert len(problems) == 4, problems


def test_without_layers_only_cycles_and_long_modules_count(tmp_path: Path) -> None:
    """``--no-layers`` (the sandbox's package): no LAYERS list to keep, the rest still holds."""
    pkg = package(
        tmp_path,
        {
            "a.py": "from .b import x\n",
            "b.py": "from .a import y\n",
            "mystery.py": "x = 1\n" * (check_layers.MAX_LINES + 1),
        },
    )
    problems = check_layers.breaches(pkg, layered=False)
    text = "\n".join(problems)
    assert "import cycle: a -> b" in text
    assert f"mystery.py: {check_layers.MAX_LINES + 1} lines" in text
    assert len(problems) == 2, problems
    assert check_layers.main(["--no-layers", str(pkg)]) == 1
