"""The ``elasticsearch`` format's options (Elasticsearch or OpenSearch ``_bulk`` into a data
stream): the data stream, and the credentials: ``api_key`` (the shared key, sent as
``Authorization: ApiKey <encoded value>``) or ``username`` / ``password`` (Basic)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..errors import ConfigError
from .intake_options import IntakeOptions
from .schema import Field, Kind, Secret, Section

DEFAULT_DATA_STREAM = "logs-jumpcloud.directory_insights-default"
# what Elasticsearch refuses in an index or data stream name
FORBIDDEN_NAME_CHARS = set('\\/*?"<>|,# :')


@dataclass(frozen=True)
class ElasticsearchOptions:
    data_stream: str
    username: str | None
    password: str | None
    # the Basic pair as sent (base64), redacted like the password (config/loading.py)
    basic: str | None

    @property
    def derived_secrets(self) -> tuple[str, ...]:
        return (self.basic,) if self.basic else ()


def _data_stream(section: Section, values: dict) -> str:
    name = section.read(values, "data_stream")
    key = section.prefix + "data_stream"
    bad = sorted(FORBIDDEN_NAME_CHARS.intersection(name))
    if (
        name != name.lower()
        or bad
        or name in (".", "..")
        or name[0] in "-_+"
        or len(name.encode("utf-8")) > 255
    ):
        raise ConfigError(
            key,
            f"{name!r} is not a data stream name Elasticsearch accepts",
            'use lowercase, no spaces or \\ / * ? " < > | , # :, not starting with - _ +, '
            f"e.g. {DEFAULT_DATA_STREAM}",
        )
    return name


def _parse(section: Section, values: dict) -> ElasticsearchOptions:
    p = section.prefix
    data_stream = _data_stream(section, values)
    username = section.read(values, "username")
    password = section.read(values, "password")
    section.refuse_short_secret("password", password)
    api_key = section.read(values, "api_key")
    if api_key and (username or password):
        raise ConfigError(
            p + "api_key",
            f"set together with {p}username/{p}password: one way to authenticate",
            f"keep {p}api_key (an Elasticsearch API key) or {p}username and {p}password",
        )
    if bool(username) != bool(password):
        missing = "password" if username else "username"
        raise ConfigError(
            p + missing,
            f"required with {p}{'username' if username else 'password'}, missing or empty",
            f"set {p}{missing} (Basic authentication) or use {p}api_key instead",
        )
    if not (
        api_key
        or username
        or any(n.lower() == "authorization" for n in values.get("headers") or {})
    ):
        raise ConfigError(
            p + "api_key",
            'required for siem.format "elasticsearch" (or siem.username and siem.password)',
            f"set {p}api_key to the API key's encoded value (create one with create_doc on the "
            "data stream)",
        )
    basic = (
        base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        if username and password
        else None
    )
    return ElasticsearchOptions(data_stream, username, password, basic)


ELASTICSEARCH = IntakeOptions(
    "elasticsearch",
    (
        Field(
            "data_stream",
            Kind.TEXT,
            DEFAULT_DATA_STREAM,
            blank_is_default=True,
            help=(
                "`elasticsearch`: the data stream the events are created in (`POST "
                "/<data_stream>/_bulk`); its index template must exist (a `logs-*-*` name "
                "matches Elasticsearch's built-in one)."
            ),
        ),
        Field(
            "username",
            Kind.TEXT,
            secret=Secret.HIDDEN,
            help=(
                "`elasticsearch`: Basic authentication's user, with `password` (instead of "
                "`api_key`)."
            ),
            shown_default="none",
        ),
        Field(
            "password",
            Kind.TEXT,
            secret=Secret.KEY,
            help="`elasticsearch`: the user's password (at least 8 characters). Secret.",
            shown_default="none",
        ),
    ),
    _parse,
    "`elasticsearch` (Elasticsearch or OpenSearch `_bulk` `create` actions into the data "
    "stream `data_stream` at `url`, e.g. `https://es.example.com:9200`)",
)
