"""JumpCloud auth: exactly one mode, the admin API key or a service account (client id and
secret, whose pair the token request sends base64-encoded)."""

from __future__ import annotations

import base64

from ..errors import ConfigError
from .schema import Section

AUTH_KEYS = ("api_key", "client_id", "client_secret")


def read_auth(section: Section, values: dict) -> tuple[str | None, str | None, str | None]:
    """(api_key, client_id, client_secret), exactly one mode set."""
    api_key, client_id, client_secret = (section.read(values, key) for key in AUTH_KEYS)
    for key, value in zip(AUTH_KEYS, (api_key, client_id, client_secret)):
        section.refuse_short_secret(key, value)
    p = section.prefix
    both = f"set either {p}api_key or {p}client_id + {p}client_secret"
    if api_key and (client_id or client_secret):
        raise ConfigError(
            p + "api_key",
            f"set together with the service account keys ({p}client_id / {p}client_secret)",
            f"use one auth mode: {both}, not both",
        )
    if not api_key and not client_id and not client_secret:
        raise ConfigError(
            p + "api_key",
            "required, missing or empty",
            f"set {p}api_key (admin API key), or {p}client_id + {p}client_secret (service account)",
        )
    if client_id and not client_secret:
        raise ConfigError(
            p + "client_secret",
            f"required with {p}client_id, missing or empty",
            f"set {p}client_secret (the service account's secret)",
        )
    if client_secret and not client_id:
        raise ConfigError(
            p + "client_id",
            f"required with {p}client_secret, missing or empty",
            f"set {p}client_id (the service account's client id)",
        )
    return api_key, client_id, client_secret


def basic_credentials(client_id: str | None, client_secret: str | None) -> str | None:
    """The token request's Basic credentials, a secret of their own (None: no service account)."""
    if not (client_id and client_secret):
        return None
    return base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
