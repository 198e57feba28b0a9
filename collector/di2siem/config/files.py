"""Reading the files the configuration needs (one-line errors, never their text) and the
warning for a secret-bearing file that others may read."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from ..errors import ConfigError


def read_file(path: str, key: str, missing_fix: str) -> bytes:
    """The bytes of a file the configuration needs, or a ConfigError naming ``key``."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ConfigError(key, f"file not found: {path}", missing_fix) from None
    except IsADirectoryError:
        raise ConfigError(key, f"is a directory: {path}", "pass the file path") from None
    except PermissionError:
        raise ConfigError(
            key,
            f"permission denied reading {path}",
            "run as a user in the file's group (the installer uses di2siem)",
        ) from None


def decode_json(data: bytes, path: str, key: str) -> Any:
    """UTF-8 JSON (a BOM is fine); the error names a position, never the text."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(key, "not UTF-8 text", f"save {path} as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            key,
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            f"fix the JSON syntax in {path}",
        ) from None


def permission_warning(path: str) -> str | None:
    """Warn when the secret-bearing file is readable by people who should not read it.

    Rule: world-readable -> warn. Group-readable -> warn only when the group lists members
    other than the running user (a shared group such as ``staff``); a service group such as
    the installer's ``root:di2siem 0640`` file read by user ``di2siem`` does not warn.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IROTH:
        return f"{path} is world-readable (mode {mode:04o}) and holds secrets; chmod 0600 or 0640"
    if mode & stat.S_IRGRP:
        try:
            import grp
            import pwd

            members = set(grp.getgrgid(st.st_gid).gr_mem)
            me = pwd.getpwuid(os.getuid()).pw_name
        except (KeyError, ImportError):
            return None
        others = members - {me}
        if others:
            return (
                f"{path} is group-readable (mode {mode:04o}) by a group with other "
                f"members ({len(others)}) and holds secrets; chmod 0600 or use a dedicated group"
            )
    return None
