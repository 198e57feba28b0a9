"""The role against the collector's declared schema (collector/di2siem/config): every key the
role's templates write is declared, and each role variable behind one agrees with its
declaration: the argument spec's type and choices, the default (defaults/main.yml), the cast
in templates/config.json.j2, the ranges of the preflight's range asserts and of the
descriptions, and which variables are secrets (credentials.json.j2, the preflight's floor of
SECRET_MIN_CHARS). The collector's own `check --offline` stays the authority on the ranges;
these checks only keep the role from drifting from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from di2siem.config.checks import SECRET_MIN_CHARS
from di2siem.config.jumpcloud import JUMPCLOUD
from di2siem.config.schema import Field, Kind, Secret, Section
from di2siem.config.siem import SIEM
from di2siem.config.toplevel import TOP
from test_role_argument_specs import SECRETS

yaml = pytest.importorskip("yaml")

ROLE = Path(__file__).resolve().parents[2] / "roles" / "di2siem"
SECTIONS = {"jumpcloud": JUMPCLOUD, "siem": SIEM, "config": TOP, "credentials": TOP}
STATEMENT = re.compile(r"\{%-?\s*set\s+(\w+)\s*=(.*?)-?%\}", re.S)
ENTRY = re.compile(r"'(\w+)':\s*\(?\s*(\w+)")
# the argument spec types a declared kind may take (a role may narrow a number to int)
ROLE_TYPES = {
    Kind.TEXT: {"str", "path"},
    Kind.CHOICE: {"str"},
    Kind.INTEGER: {"int"},
    Kind.NUMBER: {"int", "float"},
    Kind.FLOAT: {"int", "float"},
    Kind.TEXT_LIST: {"list"},
    Kind.OBJECT: {"dict"},
    Kind.FIELD_NAME: {"str"},
    Kind.SEVERITY: {"raw"},
    Kind.BOOLEAN: {"bool"},
}
CASTS = {"int": "| int", "float": "| float", "bool": "| bool"}
# role defaults that differ from the collector's on purpose
DELIBERATE = {
    # the role ships to Coralogix's documented /logs/v1/singles; the collector's default stays
    # the legacy file's json_lines (a configurations.json without "format" means that)
    "di2siem_siem_format",
}
RANGE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\.\.(-?\d+(?:\.\d+)?)(?![\w.])")


def _load(relative: str) -> Any:
    with open(ROLE / relative, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def template_entries(name: str) -> list[tuple[Section, str, str, str]]:
    """(section, key, the variable filling it, the whole expression) per key of a template."""
    text = (ROLE / "templates" / name).read_text(encoding="utf-8")
    entries = []
    for target, body in STATEMENT.findall(text):
        if target not in SECTIONS:  # e.g. legacy_state: the legacy `state` object, unchecked
            continue
        for key, variable in ENTRY.findall(body):
            expression = body[body.index(f"'{key}':") :].split("\n", 1)[0]
            entries.append((SECTIONS[target], key, variable, expression))
    return entries


@pytest.fixture(scope="module")
def options() -> dict[str, dict]:
    return _load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]


@pytest.fixture(scope="module")
def defaults() -> dict[str, Any]:
    return _load("defaults/main.yml")


@pytest.fixture(scope="module")
def mapped() -> dict[str, tuple[Section, Field, str]]:
    """Public role variable -> (section, its declared field, the template expression)."""
    found: dict[str, tuple[Section, Field, str]] = {}
    for name in ("config.json.j2", "credentials.json.j2"):
        for section, key, variable, expression in template_entries(name):
            if variable.startswith("di2siem_"):
                found[variable] = (section, section.field(key), expression)
    return found


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)


def _said(number: float | None) -> str:
    value = float(number or 0)
    return str(int(value)) if value.is_integer() else str(number)


@pytest.mark.parametrize("name", ["config.json.j2", "credentials.json.j2"])
def test_every_key_a_template_writes_is_declared(name: str) -> None:
    entries = template_entries(name)
    assert entries
    undeclared = [
        f"{section.prefix}{key}" for section, key, _, _ in entries if key not in section.keys
    ]
    assert undeclared == []


def test_types_choices_and_defaults_agree(mapped, options, defaults) -> None:
    assert len(mapped) > 30
    for variable, (section, declared, expression) in mapped.items():
        where = f"{variable} -> {section.prefix}{declared.key}"
        spec = options[variable]
        assert spec["type"] in ROLE_TYPES[declared.kind], where
        if declared.choices:
            assert set(spec["choices"]) == set(declared.choices), where
        cast = CASTS.get(spec["type"])
        if cast and declared.kind in (Kind.INTEGER, Kind.NUMBER, Kind.FLOAT):
            assert cast in expression, f"{where}: the template must write it {cast}"
        role_default = defaults[variable]
        if variable in DELIBERATE:
            assert not _same(role_default, declared.default), f"{where} is no longer different"
        elif role_default in ("", [], {}):  # unset: the template leaves the collector's default
            assert not declared.default or _same(role_default, declared.default), where
        else:
            assert _same(role_default, declared.default), (where, role_default, declared.default)


def test_preflight_range_asserts_are_the_declared_ranges(mapped, defaults) -> None:
    tasks = _load("tasks/preflight.yml")
    items = [
        item
        for task in tasks
        for item in task.get("loop", []) or []
        if isinstance(item, dict) and "min" in item
    ]
    assert len(items) == 3
    for item in items:
        section, declared, _ = mapped[item["key"]]
        where = f"{item['key']} -> {section.prefix}{declared.key}"
        assert (item["min"], item["max"]) == (declared.lo, declared.hi), where
        assert (item["pattern"] == "^[0-9]+$") == (declared.kind is Kind.INTEGER), where
        assert f"from {_said(declared.lo)} to {_said(declared.hi)}" in item["fix"], where
        assert f"default {defaults[item['key']]}" in item["fix"], where


def test_ranges_in_the_role_descriptions_are_the_declared_ones(mapped, options) -> None:
    """A range an argument spec's description or a defaults/main.yml comment states
    (``1..64``) is the declared one."""
    for variable, (_, declared, _) in mapped.items():
        if declared.lo is None:
            continue
        wanted = f"{_said(declared.lo)}..{_said(declared.hi)}"
        description = options[variable]["description"]
        description = " ".join(description) if isinstance(description, list) else description
        for text in (description, _defaults_comment(variable)):
            stated = {f"{lo}..{hi}" for lo, hi in RANGE.findall(text)}
            assert stated <= {wanted}, (variable, stated, wanted)


def _defaults_comment(variable: str) -> str:
    """The comment lines right above ``variable:`` in defaults/main.yml."""
    lines = (ROLE / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    index = lines.index(next(line for line in lines if line.startswith(f"{variable}:")))
    comment: list[str] = []
    while index > 0 and lines[index - 1].startswith("#"):
        index -= 1
        comment.insert(0, lines[index])
    return " ".join(comment)


def test_secrets_are_the_declared_ones(mapped) -> None:
    in_credentials = {v for _, _, v, _ in template_entries("credentials.json.j2")}
    in_credentials = {v for v in in_credentials if v.startswith("di2siem_")}
    declared_secret = {v for v, (_, f, _) in mapped.items() if f.secret is not Secret.NO}
    assert in_credentials == declared_secret == SECRETS
    for variable in SECRETS:  # no secret in the diffable config.json
        assert variable not in {v for _, _, v, _ in template_entries("config.json.j2")}


def test_preflight_secret_floor_is_the_collectors(mapped) -> None:
    tasks = {task["name"]: task for task in _load("tasks/preflight.yml")}
    keys = tasks["Preflight | Assert each secret is long enough to be redacted safely"]
    headers = tasks[
        "Preflight | Assert each SIEM header value is long enough to be redacted safely"
    ]
    floored = {
        v for v, (_, f, _) in mapped.items() if f.secret is Secret.KEY and f.kind is Kind.TEXT
    }
    assert set(keys["loop"]) == floored
    assert mapped["di2siem_siem_headers"][1].secret is Secret.KEY
    assert "di2siem_siem_headers" in headers["loop"]
    for task in (keys, headers):
        condition = " ".join(task["ansible.builtin.assert"]["that"])
        assert f"length >= {SECRET_MIN_CHARS}" in condition
        assert (
            f"shorter than {SECRET_MIN_CHARS} characters"
            in task["ansible.builtin.assert"]["fail_msg"]
        )
