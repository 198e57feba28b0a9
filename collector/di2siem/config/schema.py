"""The declared schema: every key of a section is declared once, as a Field (its kind, range,
default, choices, secrecy and help), and the generic checks read a value by its declaration.

From the declarations come the type, range and choice checks (one-line errors naming the key
path), which keys are secrets (never echoed, allowed in the credentials file, redacted), the
known keys behind the unknown-key warnings (keys.py), the tables of docs/configuration.md
(tests/unit/test_config_docs.py) and the role's checks (tests/role/test_role_schema.py). Rules
that a declaration cannot say (one auth mode, the legacy file, region tables, rules across keys)
are small functions in the section modules and in auth.py, legacy.py, regions.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..errors import ConfigError, shown
from .checks import SECRET_MIN_CHARS, check_header_value, check_secret_length


class Kind(Enum):
    """What a key's value is."""

    TEXT = "text"  # a string
    CHOICE = "choice"  # a string, one of Field.choices
    INTEGER = "integer"  # a whole number within lo..hi
    NUMBER = "number"  # a number within lo..hi, kept as written (int or float)
    FLOAT = "float"  # a number within lo..hi, as a float
    TEXT_LIST = "text list"  # a list of non-empty strings (a string: one item), deduplicated
    OBJECT = "object"  # a JSON object (free-form: its keys are not checked)
    FIELD_NAME = "field name"  # an event field name (dots reach into objects), "" or null: off
    SEVERITY = "severity"  # 1..6 or a severity name (siem.py)
    BOOLEAN = "boolean"  # true or false


class Secret(Enum):
    """How secret a key's value is. Every secret is never echoed in an error and may be kept in
    the credentials file instead of the configuration."""

    NO = "no"
    HIDDEN = "hidden"  # not registered for redaction by itself (a client id)
    KEY = "key"  # redacted from every log line, so at least SECRET_MIN_CHARS long
    URL = "url"  # redacted with every token-like part of it (urlsecrets.py)


@dataclass(frozen=True)
class Field:
    """One key of a section, declared once."""

    key: str
    kind: Kind
    default: Any = None
    help: str = ""  # the meaning column of the docs table
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    choices_text: str = ""  # how an error names the choices, when not "one of a, b, c"
    fold: str = ""  # "lower" / "upper": a choice is compared case-folded
    blank_is_default: bool = False  # "" means the default (else "" is a value)
    secret: Secret = Secret.NO
    shown_default: str = ""  # the docs' default column, when the default alone does not say it
    advanced: bool = False  # documented under "Advanced keys"

    @property
    def doc_default(self) -> str:
        """The default as the docs table shows it."""
        if self.shown_default:
            return self.shown_default
        text = self.default if isinstance(self.default, str) else json.dumps(self.default)
        return f"`{text}`"


@dataclass(frozen=True)
class Section:
    """The declared keys of one section ("" is the top level)."""

    name: str
    fields: tuple[Field, ...]
    subsections: tuple[Section, ...] = ()
    unchecked: tuple[str, ...] = ()  # free-form objects whose keys are not checked

    @property
    def prefix(self) -> str:
        return self.name + "." if self.name else ""

    @property
    def keys(self) -> tuple[str, ...]:
        """The known keys: the declared fields and the subsections."""
        return tuple(f.key for f in self.fields) + tuple(s.name for s in self.subsections)

    def field(self, key: str) -> Field:
        for declared in self.fields:
            if declared.key == key:
                return declared
        raise KeyError(f"{self.prefix}{key} is not declared")

    def subsection(self, name: str) -> Section | None:
        return next((s for s in self.subsections if s.name == name), None)

    def default(self, key: str) -> Any:
        return self.field(key).default

    def secret_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields if f.secret is not Secret.NO)

    def values(self, raw: dict, required: bool) -> dict:
        """This section's object in ``raw`` ({} when missing and not required)."""
        value = raw.get(self.name)
        if value is None:
            if required:
                raise ConfigError(
                    self.name, "missing section", f'add a "{self.name}" object to the file'
                )
            return {}
        if not isinstance(value, dict):
            raise ConfigError(self.name, f"must be an object (got {shown(value)})")
        return value

    def read(self, values: dict, key: str) -> Any:
        """The value of ``key``, checked as declared (the default when missing)."""
        declared = self.field(key)
        return READERS[declared.kind](values, declared, self.prefix + key)

    def text(self, values: dict, key: str) -> str | None:
        """The value of ``key`` as plain text, None when missing (for a section's own rules)."""
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.prefix + key, f"must be a string (got {shown(value)})")
        return value

    def refuse_short_secret(self, key: str, value: str | None, path: str = "") -> None:
        """The floor of a secret redacted from every log line (SECRET_MIN_CHARS); ``path``
        names a value inside the key (a header of siem.headers)."""
        if value and self.field(key).secret is Secret.KEY:
            check_secret_length(value, path or self.prefix + key)


def _text(values: dict, declared: Field, path: str) -> str | None:
    if declared.secret is not Secret.NO:
        return _secret_text(values, declared, path)
    value = values.get(declared.key)
    if value is None:
        return declared.default
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string (got {shown(value)})")
    if declared.blank_is_default and not value:
        return declared.default
    return value


def _secret_text(values: dict, declared: Field, path: str) -> str | None:
    value = values.get(declared.key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(path, "must be a string")  # never echo a secret-bearing value back
    check_header_value(value, path)
    return value


def _choice(values: dict, declared: Field, path: str) -> str:
    value = _text(values, declared, path)
    if declared.fold:
        value = getattr(value, declared.fold)()
    if value not in declared.choices:
        said = declared.choices_text or "one of " + ", ".join(declared.choices)
        raise ConfigError(path, f"must be {said} (got {shown(value)})")
    return value  # type: ignore[return-value]


def _number(values: dict, declared: Field, path: str) -> Any:
    value = values.get(declared.key)
    if value is None:
        value = declared.default
    else:
        integer = declared.kind is Kind.INTEGER
        lo, hi = declared.lo, declared.hi
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and integer and isinstance(value, float):
            ok = value.is_integer()
            value = int(value) if ok else value
        if not ok or not (lo <= value <= hi) or value != value:  # type: ignore[operator]
            kind = "an integer" if integer else "a number"
            raise ConfigError(
                path, f"must be {kind} between {range_said(declared)} (got {shown(value)})"
            )
    return float(value) if declared.kind is Kind.FLOAT else value


def range_said(declared: Field) -> str:
    """``lo and hi`` as an error says it (whole numbers without a decimal point)."""
    lo, hi = (_number_said(v) for v in (declared.lo, declared.hi))
    return f"{lo} and {hi}"


def _number_said(value: float | None) -> str:
    number = float(value or 0)
    return str(int(number)) if number.is_integer() else str(value)


def _text_list(values: dict, declared: Field, path: str) -> tuple[str, ...]:
    value = values.get(declared.key)
    if value is None:
        return declared.default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(path, f"must be a list of non-empty strings (got {shown(value)})")
    seen: list[str] = []
    for item in value:
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def _field_name(values: dict, declared: Field, path: str) -> str | None:
    """Missing -> the default, null or "" -> None (off)."""
    if declared.key not in values:
        return declared.default
    value = values[declared.key]
    if value is None or value == "":
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or any(not part for part in value.split("."))
    ):
        raise ConfigError(
            path,
            f"must be a field name such as {shown(declared.default or 'jumpcloud')} "
            f"(got {shown(value)})",
            'use "" or null to turn it off',
        )
    return value


def _boolean(values: dict, declared: Field, path: str) -> bool:
    value = values.get(declared.key)
    if value is None:
        return bool(declared.default)
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false (got {shown(value)})")
    return value


def _as_given(values: dict, declared: Field, path: str) -> Any:
    """Objects and severities: read by their section's own rules (the raw value)."""
    return values.get(declared.key)


READERS = {
    Kind.TEXT: _text,
    Kind.CHOICE: _choice,
    Kind.INTEGER: _number,
    Kind.NUMBER: _number,
    Kind.FLOAT: _number,
    Kind.TEXT_LIST: _text_list,
    Kind.FIELD_NAME: _field_name,
    Kind.OBJECT: _as_given,
    Kind.SEVERITY: _as_given,
    Kind.BOOLEAN: _boolean,
}

__all__ = ["SECRET_MIN_CHARS", "Field", "Kind", "Secret", "Section", "range_said"]
