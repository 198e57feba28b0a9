"""The role's contract: meta/argument_specs.yml and defaults/main.yml agree.

Every public variable has a default and a spec entry (same keys, same defaults), carries the
role prefix, and every secret is described as one. No option is `no_log` in the specs: the role
validation never masks with it, and before ansible-core 2.19 it rejects inline !vault values
(tests/role/test_ansible_core_versions.py); the tasks that handle secrets are no_log.
"""

import json
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROLE = Path(__file__).resolve().parents[2] / "roles" / "di2siem"
SECRETS = {
    "di2siem_jumpcloud_api_key",
    "di2siem_jumpcloud_client_id",
    "di2siem_jumpcloud_client_secret",
    "di2siem_coralogix_api_key",
    "di2siem_siem_headers",
    "di2siem_siem_api_key",
    "di2siem_siem_password",
    "di2siem_siem_username",
    "di2siem_siem_client_id",
    "di2siem_siem_client_secret",
    "di2siem_siem_token",
    "di2siem_heartbeat_url",
}


def load(relative):
    with open(ROLE / relative, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def defaults():
    return load("defaults/main.yml")


@pytest.fixture(scope="module")
def options():
    return load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]


def test_same_variables(defaults, options):
    assert set(defaults) - set(options) == set(), "in defaults/main.yml, not in argument_specs"
    assert set(options) - set(defaults) == set(), "in argument_specs, not in defaults/main.yml"


def test_public_variables_carry_the_role_prefix(defaults):
    assert [k for k in defaults if not k.startswith("di2siem_")] == []


def test_defaults_match(defaults, options):
    mismatched = {
        name: (spec.get("default"), defaults[name])
        for name, spec in options.items()
        if name in defaults and spec.get("default") != defaults[name]
    }
    assert mismatched == {}


def test_every_option_is_typed_and_described(options):
    assert [n for n, spec in options.items() if "type" not in spec] == []
    assert [n for n, spec in options.items() if not spec.get("description")] == []


def test_secrets_are_described_as_secrets_and_empty_by_default(defaults, options):
    for name in SECRETS:
        assert "secret" in " ".join(_words(options[name]["description"])).lower(), name
        assert not defaults[name], f"{name} must not have a real default"
    assert [n for n, spec in options.items() if "no_log" in spec] == []
    # anything that looks like a secret must be in SECRETS
    suspicious = {
        n for n in options if n.endswith(("_key", "_password", "_token", "_headers", "_secret"))
    }
    assert suspicious <= SECRETS


def _words(description):
    return description if isinstance(description, list) else [description]


def test_choices_contain_the_default(options):
    for name, spec in options.items():
        if "choices" in spec:
            assert spec["default"] in spec["choices"], name


# The role README's variable table is rendered from meta/argument_specs.yml: regenerate it with
# `python tests/role/test_role_argument_specs.py` after changing the specs.
README = ROLE / "README.md"
TABLE_BEGIN = "<!-- BEGIN VARIABLES: generated from meta/argument_specs.yml -->"
TABLE_END = "<!-- END VARIABLES -->"


def _cell(value):
    value = " ".join(str(v) for v in _words(value))
    return " ".join(str(value).split()).replace("|", "\\|")


def _default(spec):
    if "default" not in spec:
        return "(required)"
    return "`" + json.dumps(spec["default"]).replace("|", "\\|") + "`"


def render_table(options):
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, spec in options.items():
        kind = spec["type"] + (f" of {spec['elements']}" if "elements" in spec else "")
        if "choices" in spec:
            kind += ": " + ", ".join(str(c) for c in spec["choices"])
        if name in SECRETS:
            kind += " (secret)"
        rows.append(f"| `{name}` | {kind} | {_default(spec)} | {_cell(spec['description'])} |")
    return "\n".join([TABLE_BEGIN, *rows, TABLE_END])


def _readme_with(table):
    text = README.read_text(encoding="utf-8")
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    return text[:start] + table + text[end:]


def test_readme_table_is_the_argument_specs(options):
    text = README.read_text(encoding="utf-8")
    assert text == _readme_with(render_table(options)), (
        "roles/di2siem/README.md's variable table differs from meta/argument_specs.yml:"
        " run `python tests/role/test_role_argument_specs.py`"
    )
    # every variable, each once
    assert [n for n in options if text.count(f"| `{n}` |") != 1] == []


if __name__ == "__main__":
    specs = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    README.write_text(_readme_with(render_table(specs)), encoding="utf-8")
