"""The one error a configuration problem raises: which key, what is wrong, how to fix it.

Kept apart so that every module of the configuration (the sections, the credentials file,
the environment file) can raise it without importing the parser.
"""

from __future__ import annotations

import json
from typing import Any


class ConfigError(Exception):
    """A configuration problem: which key, what is wrong, how to fix it."""

    def __init__(self, key_path: str, problem: str, fix: str = "") -> None:
        self.key_path = key_path
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self, config_path: str | None = None) -> str:
        fix = self.fix or (f"fix the value in {config_path}" if config_path else "fix the value")
        return f"{self.key_path}: {self.problem}; {fix}"


def shown(value: Any) -> str:
    """A value as an error message quotes it: JSON, cut to 60 characters (never a secret's)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
