"""Reading a configuration: the file, the credentials file merged over it, each declared
section parsed into its frozen dataclass, the secrets to redact and the warnings to give."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from . import credentials
from .auth import basic_credentials
from .files import decode_json, permission_warning, read_file
from .jumpcloud import JUMPCLOUD, JumpCloudConfig, parse_jumpcloud, service_warnings
from .keys import unknown_keys
from .legacy import legacy_end_time_ms
from .schema import Secret, Section
from .siem import SIEM, SiemConfig, parse_siem
from .toplevel import TOP, Config, heartbeat_url, metrics_file, state_dir
from .urlsecrets import url_secrets


def load(path: str) -> Config:
    """Read and validate the configuration file (never writes to it)."""
    data = read_file(path, "--config", "pass the right path")
    return parse(decode_json(data, path, "(file)"), path)


def parse(raw: Any, path: str) -> Config:
    """Validate a decoded JSON document (with its credentials file merged over it); raise
    ConfigError on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError(
            "(top level)",
            f"{path} holds a JSON {_json_kind(raw)}, not an object",
            'make the whole file one object: {"jumpcloud": {...}, "siem": {...}}',
        )
    merged = credentials.merge(raw, os.path.dirname(os.path.abspath(path)))
    try:
        return _parse(merged.raw, path, merged)
    except ConfigError as exc:
        if credentials.from_file(exc.key_path, merged):
            fix = exc.fix or f"fix the value in {merged.path}"
            raise ConfigError(f"{exc.key_path} (in {merged.path})", exc.problem, fix) from None
        if merged.path and exc.key_path in credentials.secret_key_paths():
            fix = f"{exc.fix or 'set it'} in credentials_file {merged.path}"
            raise ConfigError(exc.key_path, exc.problem, fix) from None
        raise


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def _parse(raw: dict, path: str, merged: credentials.Merged) -> Config:
    jc = parse_jumpcloud(raw)
    siem = parse_siem(raw)
    config_dir = os.path.dirname(os.path.abspath(path))
    state = state_dir(raw, config_dir)
    log_level = TOP.read(raw, "log_level")
    legacy_end = legacy_end_time_ms(raw)
    heartbeat = heartbeat_url(raw)
    log_format = TOP.read(raw, "log_format")
    base = TOP.read(raw, "retry_base_delay_seconds")
    cap = TOP.read(raw, "retry_max_delay_seconds")
    return Config(
        path=os.path.abspath(path),
        jumpcloud=jc,
        siem=siem,
        state_dir=state,
        run_time_budget_seconds=TOP.read(raw, "run_time_budget_seconds"),
        max_retries=TOP.read(raw, "max_retries"),
        retry_base_delay_seconds=base,
        retry_max_delay_seconds=cap,
        recent_ids_max=TOP.read(raw, "recent_ids_max"),
        log_level=log_level,
        legacy_end_time_ms=legacy_end,
        metrics_file=metrics_file(raw, config_dir),
        heartbeat_url=heartbeat,
        log_format=log_format,
        parallel_orgs=TOP.read(raw, "parallel_orgs"),
        secrets=registered_secrets(jc, siem, heartbeat),
        warnings=tuple(service_warnings(jc) + list(merged.notes)),
        unknown_keys=tuple(unknown_keys(raw, TOP)),
        credentials_file=merged.path,
        secret_files=_secret_files(os.path.abspath(path), merged),
    )


def registered_secrets(
    jc: JumpCloudConfig, siem: SiemConfig, heartbeat: str | None
) -> tuple[str, ...]:
    """Every value to redact from log lines, longest first: the declared secrets (a key,
    each header value, each part of a secret URL) and the service account's Basic pair."""
    found = _secret_values(JUMPCLOUD, vars(jc)) + _secret_values(SIEM, vars(siem))
    if siem.options is not None:
        found += _secret_values(SIEM, vars(siem.options))
        found += getattr(siem.options, "derived_secrets", ())  # e.g. a Basic pair as sent
    found += _secret_values(TOP, {"heartbeat_url": heartbeat})
    found.append(basic_credentials(jc.client_id, jc.client_secret) or "")
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))


def _secret_values(section: Section, values: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for declared in section.fields:
        value = values.get(declared.key)
        if not value:
            continue
        if declared.secret is Secret.KEY:
            pairs = value if isinstance(value, tuple) else (("", value),)
            found += [v for _, v in pairs]
        elif declared.secret is Secret.URL:
            found += url_secrets(value)
    return found


def _secret_files(config_path: str, merged: credentials.Merged) -> tuple[str, ...]:
    """The files whose permissions matter: the ones holding secret values."""
    files = (config_path,) if merged.inline or merged.path is None else ()
    return files + ((merged.path,) if merged.path else ())


def permission_warnings(cfg: Config) -> list[str]:
    """One warning per secret-bearing file (configuration, credentials file) too open."""
    return [w for w in (permission_warning(p) for p in cfg.secret_files) if w]
