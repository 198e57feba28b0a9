"""Logs on stderr, one line per event of note, with every secret (configured, or learnt at run
time: ``add_secret``) redacted in every encoding: ``key=value`` (default) or, with
``log_format: json``, one JSON object per line (``ts``, ``level``, ``logger``, ``msg`` and the
fields) for journald and log shippers.

Redaction rewrites the message and the field values before they are formatted, never the
finished line: the timestamp, level, logger name, field names and the JSON or key=value
syntax stay intact whatever a secret (or a peer that chose one) looks like."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
REDACTED = "[redacted]"
ELLIPSIS = "..."  # what a cut excerpt ends with (body_excerpt, causes.clean in transport)
PARTIAL_MIN = 4  # a cut secret is redacted down to this many leading characters


def _html_escape(text: str, quote: bool = True) -> str:
    """html.escape's exact output, without importing html (and its entity tables) each run."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;").replace("'", "&#x27;") if quote else text


def secret_forms(secret: str) -> set[str]:
    """Every way a secret can show up in text we print: raw, JSON-escaped (once and twice:
    a server's JSON echo inside our own escaping), Python repr, URL-encoded, HTML-escaped."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        _html_escape(secret),
        _html_escape(secret, quote=False),
    }
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}
    forms |= {form.replace("%", "%25") for form in list(forms) if "%" in form}
    return {form for form in forms if form}


def _fmt_value(value: Any) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if text == "" or any(c in text for c in ' "=\t\n'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class Logger:
    def __init__(self, level: str = "info", stream: TextIO | None = None) -> None:
        self.threshold = LEVELS.get(level, 20)
        self.stream = stream
        self.secrets: tuple[str, ...] = ()  # every form of every secret, longest first
        self._raw: set[str] = set()  # the secrets as registered
        self.json = False
        self._live = ""  # the live progress line a terminal shows under the log
        self._write_lock = threading.Lock()

    def set_format(self, log_format: str) -> None:
        self.json = log_format == "json"

    def set_secrets(self, secrets: tuple[str, ...] | list[str]) -> None:
        self._raw = {secret for secret in secrets if secret}
        forms: set[str] = set()
        for secret in self._raw:
            forms |= secret_forms(secret)
        # longest first so a secret containing another is redacted whole
        self.secrets = tuple(sorted(forms, key=len, reverse=True))

    def add_secret(self, secret: str) -> None:
        """Redact a secret learnt at run time (a JumpCloud access token) from now on."""
        if secret and secret not in self._raw:
            self.set_secrets((*self._raw, secret))

    def set_level(self, level: str) -> None:
        self.threshold = LEVELS.get(level, 20)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if ELLIPSIS in text:
            # an excerpt cut in the middle of a secret: its beginning is a secret too
            for secret in self.secrets:
                for end in range(len(secret) - 1, PARTIAL_MIN - 1, -1):
                    cut = secret[:end] + ELLIPSIS
                    if cut in text:
                        text = text.replace(cut, REDACTED + ELLIPSIS)
        return text

    def emit(self, level: str, message: str, **fields: Any) -> None:
        if LEVELS[level] < self.threshold:
            return
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.json:
            line = self._json_line(ts, level, message, fields)
        else:
            parts = [ts, level, "di2siem", self.redact(message)]
            parts.extend(f"{k}={_fmt_value(self._redact_value(v))}" for k, v in fields.items())
            line = " ".join(parts)
        stream = self.stream or sys.stderr
        with self._write_lock:
            try:
                # a live line is cleared, the log line written, then the live line drawn again
                clear = "\r\x1b[K" if self._live else ""
                stream.write(f"{clear}{line}\n{self._live}")
                stream.flush()
            except (OSError, ValueError):
                pass

    def live(self, text: str) -> bool:
        """Show text as the terminal's live line (redrawn in place; "" removes it). Only on a
        terminal and in key=value format: False, and nothing written, elsewhere."""
        stream = self.stream or sys.stderr
        try:
            if self.json or not stream.isatty():
                return False
        except (OSError, ValueError, AttributeError):
            return False
        with self._write_lock:
            self._live = self.redact(text)
            try:
                stream.write("\r\x1b[K" + self._live)
                stream.flush()
            except (OSError, ValueError):
                pass
        return True

    def _redact_value(self, value: Any) -> Any:
        """A field value with every secret redacted; numbers and booleans stay as they are
        unless their text holds a secret (then the redacted text)."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            return value if self.redact(text) == text else self.redact(text)
        return self.redact(str(value))

    def _json_line(self, ts: str, level: str, message: str, fields: dict[str, Any]) -> str:
        # values are redacted before json.dumps: the line is valid JSON whatever the secrets
        record: dict[str, Any] = {"ts": ts, "level": level, "logger": "di2siem"}
        record["msg"] = self.redact(message)
        for key, value in fields.items():
            if key in ("ts", "level", "logger", "msg"):
                key = "field_" + key
            if isinstance(value, float):
                # NaN and the infinities have no JSON form
                value = round(value, 3) if math.isfinite(value) else str(value)
            record[key] = self._redact_value(value)
        return json.dumps(record, ensure_ascii=False)

    def debug(self, message: str, **fields: Any) -> None:
        self.emit("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.emit("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.emit("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.emit("error", message, **fields)
