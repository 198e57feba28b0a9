"""The credentials file: the secret values kept apart from the diffable configuration.

``credentials_file`` in the configuration names a JSON file shaped like the configuration but
holding only the secrets (``jumpcloud.api_key``, ``jumpcloud.client_id``,
``jumpcloud.client_secret``, ``siem.api_key``, ``siem.headers``, ``heartbeat_url``). Its values
are merged over the configuration before it is parsed, so they are validated, used and
registered for redaction exactly like inline ones. Errors name the file and the key, never a
value.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .files import decode_json, read_file
from .toplevel import SCHEMA

# section -> the keys the credentials file may set there ("" is the top level): the secrets
SECRET_KEYS = {section.name: section.secret_keys() for section in SCHEMA}
KEY = "credentials_file"


def _error(problem: str, fix: str) -> ConfigError:
    return ConfigError(KEY, problem, fix)


def credentials_path(raw: dict, config_dir: str) -> str | None:
    """The credentials file named by the configuration (relative: to its directory)."""
    value = raw.get(KEY)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip():
        raise _error("must be a file path (a string)", f"set {KEY} to the credentials file's path")
    return os.path.normpath(os.path.join(config_dir, value.strip()))


def read(path: str) -> dict:
    """The decoded credentials file, or ConfigError (one line naming the file and the fix)."""
    fix = f"create it (the secrets as JSON, see docs/configuration.md) or fix {KEY}"
    doc = decode_json(read_file(path, KEY, fix), path, KEY)
    if not isinstance(doc, dict):
        raise _error(f"{path} must hold a JSON object", 'write {"jumpcloud": {"api_key": ...}}')
    return doc


def secret_key_paths() -> list[str]:
    return [f"{sec}.{key}" if sec else key for sec, keys in SECRET_KEYS.items() for key in keys]


def _refuse(path: str, key_path: str) -> Exception:
    close = difflib.get_close_matches(key_path, secret_key_paths(), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return _error(
        f"{path}: {key_path} is not a secret key{hint}",
        f"keep only {', '.join(secret_key_paths())} there; other keys belong in the configuration",
    )


@dataclass(frozen=True)
class Merged:
    raw: dict  # the configuration with the credentials merged over it
    path: str | None  # the credentials file (None: no credentials_file key)
    keys: tuple[str, ...]  # key paths whose value came from the credentials file
    notes: tuple[str, ...]  # keys set in both files
    inline: bool  # the configuration itself holds a secret value


def merge(raw: dict, config_dir: str) -> Merged:
    """Merge the credentials file over the configuration, per key: a section keeps its other
    keys, ``siem.headers`` is merged header by header. A key set in both files takes the
    credentials file's value (noted)."""
    inline = _holds_secrets(raw)
    path = credentials_path(raw, config_dir)
    if path is None:
        return Merged(raw, None, (), (), inline)
    creds = read(path)
    merged = dict(raw)
    keys: list[str] = []
    notes: list[str] = []
    for name, value in creds.items():
        if name in SECRET_KEYS and name:
            if not isinstance(value, dict):
                raise _error(f"{path}: {name} must be an object", f'write "{name}": {{...}}')
            section = merged.get(name)
            section = dict(section) if isinstance(section, dict) else {}
            for key, secret in value.items():
                if key not in SECRET_KEYS[name]:
                    raise _refuse(path, f"{name}.{key}")
                notes += _merge_key(section, key, secret, f"{name}.{key}", path)
                keys.append(f"{name}.{key}")
            merged[name] = section
        elif name in SECRET_KEYS[""]:
            notes += _merge_key(merged, name, value, name, path)
            keys.append(name)
        else:
            raise _refuse(path, name)
    return Merged(merged, path, tuple(keys), tuple(notes), inline)


def _holds_secrets(raw: dict) -> bool:
    for name, keys in SECRET_KEYS.items():
        section = raw.get(name) if name else raw
        if isinstance(section, dict) and any(section.get(k) not in (None, "", {}) for k in keys):
            return True
    return False


def _merge_key(target: dict, key: str, value: Any, key_path: str, path: str) -> list[str]:
    if key == "headers" and isinstance(value, dict) and isinstance(target.get(key), dict):
        headers = dict(target[key])
        overlap = sorted(set(headers) & set(value))
        headers.update(value)
        target[key] = headers
        shown = ", ".join(f"{key_path}.{name}" for name in overlap)
        return [_both_note(shown, path)] if overlap else []
    note = [_both_note(key_path, path)] if target.get(key) not in (None, "") else []
    target[key] = value
    return note


def _both_note(key_path: str, path: str) -> str:
    return (
        f"{key_path} is set in the configuration and in {KEY} {path}; the credentials file's "
        "value is used: remove it from the configuration"
    )


def from_file(error_key: str, merged: Merged) -> bool:
    """Whether a ConfigError's key path names a value the credentials file gave."""
    return any(error_key == key or error_key.startswith(key + ".") for key in merged.keys)
