"""docs/configuration.md's key tables are rendered from the declared schema
(collector/di2siem/config: each section's Field declarations), so a key, its default and its
meaning are written once. Regenerate them with `python tests/unit/test_config_docs.py` after
changing a declaration."""

from __future__ import annotations

import re
from pathlib import Path

from di2siem.config.jumpcloud import JUMPCLOUD
from di2siem.config.schema import Field
from di2siem.config.siem import SIEM
from di2siem.config.toplevel import TOP

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
BEGIN = (
    "<!-- BEGIN KEYS {name}: generated from the config declarations"
    " (tests/unit/test_config_docs.py) -->"
)
END = "<!-- END KEYS {name} -->"
RANGE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\.\.(-?\d+(?:\.\d+)?)(?![\w])")


def tables() -> dict[str, tuple[Field, ...]]:
    """Table name -> its rows: each section's fields, the top level's advanced ones apart."""
    top = [f for f in TOP.fields if not f.advanced]
    advanced = [f for f in TOP.fields if f.advanced]
    return {
        "jumpcloud": JUMPCLOUD.fields,
        "siem": SIEM.fields,
        "top": tuple(top),
        "advanced": tuple(advanced),
    }


def render(name: str, fields: tuple[Field, ...]) -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{f.key}` | {f.doc_default} | {f.help} |" for f in fields]
    return "\n".join([BEGIN.format(name=name), *rows, END.format(name=name)])


def rendered_doc(text: str) -> str:
    for name, fields in tables().items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        start, stop = text.index(begin), text.index(end) + len(end)
        text = text[:start] + render(name, fields) + text[stop:]
    return text


def test_doc_tables_are_the_declarations() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text == rendered_doc(text), (
        "docs/configuration.md's key tables differ from the declarations in "
        "collector/di2siem/config: run `python tests/unit/test_config_docs.py`"
    )


def test_every_declared_key_has_one_row() -> None:
    documented = [f.key for fields in tables().values() for f in fields]
    declared = [f.key for s in (JUMPCLOUD, SIEM, TOP) for f in s.fields]
    assert sorted(documented) == sorted(declared)


def _said(number: float | None) -> str:
    value = float(number or 0)
    return str(int(value)) if value.is_integer() else str(number)


def test_ranges_in_the_help_are_the_declared_ones() -> None:
    """A help text that states a range (``1..100``) states the declared one; every ranged
    key states it, except where the text says it in words."""
    in_words = {"initial_days_back": "down to -3650"}
    for section in (JUMPCLOUD, SIEM, TOP):
        for declared in section.fields:
            if declared.lo is None:
                continue
            wanted = f"{_said(declared.lo)}..{_said(declared.hi)}"
            stated = {f"{lo}..{hi}" for lo, hi in RANGE.findall(declared.help)}
            stated.discard("2..10")  # max_requests_per_second: what peers hold themselves to
            if declared.key in in_words and in_words[declared.key] in declared.help:
                continue
            if not stated and declared.key in _UNSTATED:
                continue
            assert stated == {wanted}, (section.prefix + declared.key, stated, wanted)


# keys whose help states no range (the check's message does): kept short on purpose
_UNSTATED = {
    "timeout_seconds",
    "batch_delay_milliseconds",
    "run_time_budget_seconds",
    "retry_base_delay_seconds",
    "retry_max_delay_seconds",
}

if __name__ == "__main__":
    DOC.write_text(rendered_doc(DOC.read_text(encoding="utf-8")), encoding="utf-8")
