"""``--env-file PATH``: environment variables for the run (a proxy, above all), read from a file.

Cron cannot give a job an environment without writing it into the crontab (where every local
user may read it, secrets included), so the job names a root-owned file instead, the same file
the systemd unit reads with ``EnvironmentFile=``. The syntax is the subset of systemd's that
means the same to both readers:

- blank lines and lines starting with ``#`` or ``;`` are ignored;
- ``NAME=value`` with NAME made of letters, digits and ``_`` (not starting with a digit);
- the value is unquoted (no quotes, no backslash; surrounding blanks are dropped), or wholly
  in double quotes (``\\"``, ``\\\\``, ``\\$`` and ``\\``` stand for the character, any other
  backslash is kept), or wholly in single quotes (taken literally). One line per variable.

Every problem is a ConfigError naming the file, the line and the fix, never a value. The
collector's proxy choice reads the environment per request (transport.session._proxies_for), so the
variables set here are honoured; loopback is never proxied.
"""

from __future__ import annotations

import base64
import os
import re
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from .checks import SECRET_MIN_CHARS
from .files import read_file

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DOUBLE_QUOTE_ESCAPES = '"\\`$'  # systemd's SHELL_NEED_ESCAPE


def _error(where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"--env-file {where}", problem, fix)


def read(path: str) -> dict[str, str]:
    """The variables of the file, in order; ConfigError on an unreadable or malformed file."""
    data = read_file(path, "--env-file", "pass the right path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("--env-file", "not UTF-8 text", f"save {path} as UTF-8") from None
    return parse(text, path)


def parse(text: str, path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        where = f"{path} line {number}"
        name, sep, raw = stripped.partition("=")
        name = name.strip()
        if not sep or not NAME.fullmatch(name):
            raise _error(
                where,
                "not a NAME=value line",
                "write one NAME=value per line (NAME: letters, digits, _), as systemd's "
                "EnvironmentFile= reads it",
            )
        values[name] = _value(raw.strip(), f"{where} ({name})")
    return values


def _value(raw: str, where: str) -> str:
    if raw[:1] == "'":
        if len(raw) < 2 or raw[-1] != "'" or "'" in raw[1:-1]:
            raise _error(where, "unbalanced single quotes", "quote the whole value: NAME='value'")
        return raw[1:-1]
    if raw[:1] == '"':
        return _double_quoted(raw, where)
    if any(c in raw for c in "\"'\\"):
        raise _error(
            where,
            "a quote or backslash in an unquoted value",
            'put the value in double quotes and escape " \\ $ ` with a backslash',
        )
    return raw


def _double_quoted(raw: str, where: str) -> str:
    out: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == "\\" and index + 1 < len(raw):
            following = raw[index + 1]
            out.append(following if following in DOUBLE_QUOTE_ESCAPES else char + following)
            index += 2
            continue
        if char == '"':
            if index != len(raw) - 1:
                raise _error(where, "text after the closing quote", "quote the whole value")
            return "".join(out)
        out.append(char)
        index += 1
    raise _error(where, "no closing double quote", 'end the value with " on the same line')


def apply(values: dict[str, str]) -> None:
    """Set the variables for this process (a file value wins over the inherited one)."""
    os.environ.update(values)


def secrets(values: dict[str, str]) -> list[str]:
    """What to redact: a proxy URL carrying credentials, its user:password pair (as written
    and decoded), the Proxy-Authorization value built from them, and the password alone when
    it is long enough to redact safely (SECRET_MIN_CHARS: a 3-character password redacted
    everywhere would rewrite ordinary text; inside its URL or pair it is still redacted).
    Other variables are never logged."""
    found: list[str] = []
    for name, value in values.items():
        if not name.lower().endswith("_proxy"):
            continue
        try:
            parts = urlsplit(value if "://" in value else "http://" + value)
            user, password = parts.username, parts.password
        except ValueError:
            continue
        if password:
            written = f"{user or ''}:{password}"
            pair = f"{unquote(user or '')}:{unquote(password)}"
            found += [value, written, pair, base64.b64encode(pair.encode()).decode()]
            found += [p for p in (password, unquote(password)) if len(p) >= SECRET_MIN_CHARS]
    return found
