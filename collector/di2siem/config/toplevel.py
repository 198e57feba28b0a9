"""The top level of the configuration: its declared keys, the Config they become (with the
two sections), and the whole declared schema."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ConfigError
from .checks import check_url
from .jumpcloud import JUMPCLOUD, JumpCloudConfig
from .orgs import DEFAULT_ORG, PROVIDER_PREFIX
from .schema import Field, Kind, Secret, Section
from .siem import SIEM, SiemConfig

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("keyvalue", "json")

TOP = Section(
    "",
    (
        Field(
            "state_dir",
            Kind.TEXT,
            help=(
                "Where the state (`orgs/<org>.json`, see [state.md](state.md)) and the lock "
                "`di2siem.lock` live (a relative path is relative to the config file's "
                "directory). Created `0700` on the first `run` when its parent exists (a "
                "missing parent is a config error naming it: exit 2, nothing created); never by "
                "`check`. It must be "
                "owned by the user running di2siem and not writable by group or others: `run` "
                "refuses anything else (exit 2, `chmod 700 <dir>`). The installer uses "
                "`/var/lib/di2siem`."
            ),
            shown_default="`<directory of the config file>/di2siem-state`",
        ),
        Field(
            "run_time_budget_seconds",
            Kind.FLOAT,
            50,
            lo=1,
            hi=86400,
            help=(
                "A run stops between batches once this much time has passed, saves, logs `run "
                "time budget reached` and exits 0, so cron runs do not pile up. A retry whose "
                "wait (backoff or `Retry-After`) would end past the budget is not waited for: the"
                " run fails (exit 1) with a message naming `run_time_budget_seconds`, state keeps"
                " every accepted batch and the next run resumes."
            ),
        ),
        Field(
            "max_retries",
            Kind.INTEGER,
            5,
            lo=0,
            hi=20,
            help=(
                "Retries per request for 429, 5xx, 408, connection errors, timeouts and malformed"
                " answers (0..20)."
            ),
        ),
        Field(
            "log_level",
            Kind.CHOICE,
            "info",
            choices=LOG_LEVELS,
            fold="lower",
            blank_is_default=True,
            help="`debug`, `info`, `warning` or `error`.",
        ),
        Field(
            "log_format",
            Kind.CHOICE,
            "keyvalue",
            choices=LOG_FORMATS,
            fold="lower",
            blank_is_default=True,
            help=(
                "`keyvalue` (`<time> <level> di2siem <message> key=value ...`) or `json`: one "
                'JSON object per line, `{"ts", "level", "logger": "di2siem", "msg", ...fields}` '
                "(numbers stay numbers), for journald and log shippers. Secrets are redacted in "
                "both."
            ),
        ),
        Field(
            "metrics_file",
            Kind.TEXT,
            help=(
                "A Prometheus textfile (e.g. "
                "`/var/lib/node_exporter/textfile_collector/di2siem.prom`; relative: to the "
                "config file's directory) rewritten atomically after every run, failed ones "
                "included, mode 0644. Its directory must exist and be writable by the service "
                'user. See "Operability" below.'
            ),
            shown_default="none (off)",
        ),
        Field(
            "heartbeat_url",
            Kind.TEXT,
            secret=Secret.URL,
            help=(
                "A dead man's switch (healthchecks.io and compatible): after every run a GET of "
                "this URL on success, of the URL + `/fail` on failure; one attempt that ends "
                "within 5 s and never past the run's own bound (`run_time_budget_seconds` + 5 s: "
                "a run that used its grace skips the ping and says so), no redirects (reported as"
                " `redirected (not followed)`, never with its Location). A secret, and so is "
                "every part of it but scheme and host (path, query, fragment, and each token-like"
                " path segment or query value alone): redacted everywhere, never echoed in "
                "errors. https, or plain http on loopback. A ping that fails is logged and never "
                "fails the run."
            ),
            shown_default="none (off)",
        ),
        Field(
            "credentials_file",
            Kind.TEXT,
            help=(
                "A JSON file holding only the secrets, merged over this file (relative path: to "
                'this file\'s directory). See "Credentials file" below. The installer uses '
                "`/etc/di2siem/credentials.json` so that `/etc/di2siem/config.json` holds no "
                "secret and `ansible-playbook --diff` can show its changes."
            ),
            shown_default="none",
        ),
        Field(
            "parallel_orgs",
            Kind.INTEGER,
            8,
            lo=1,
            hi=64,
            help=(
                "How many orgs one run serves at the same time (1..64), each with its own "
                "JumpCloud and SIEM connections, sharing the run's time budget and "
                "`jumpcloud.max_requests_per_second`. Orgs take turns least recently served first"
                " (an org whose turn the budget cut before it shipped anything keeps its place), "
                "and their first JumpCloud requests queue in that order, so a long backfill of "
                "one org holds one of these lanes and cannot starve the others. Every guarantee "
                "stays per org (cursor only after an accepted batch, overlap and id memory, after"
                " a `kill -9`, at most the batch in flight of each lane is re-sent: up to "
                "`parallel_orgs` batches in all, since every lane has at most one batch posted at"
                " a time and a shared query's batch, which may mix its members, is one of them). "
                "Memory: at most `parallel_orgs` times the per-org bound (two pages, two batches "
                'and that org\'s recent ids, see "Memory" below).'
            ),
        ),
        Field(
            "state",
            Kind.OBJECT,
            help=(
                "Legacy, read only: `state.end_time` of the PowerShell script seeds the first "
                "run (see migration). An RFC 3339 UTC time; more than 5 minutes past this "
                "host's clock is a config error naming `state.end_time` (exit 2: seeding the "
                "floor there would count every event until then as shipped)."
            ),
            shown_default="none",
        ),
        Field(
            "retry_base_delay_seconds",
            Kind.FLOAT,
            1.0,
            lo=0,
            hi=600,
            advanced=True,
            help=(
                "First backoff step; attempt *n* waits a random time in `[d/2, d]` with `d = "
                "min(retry_max_delay_seconds, base * 2^n)`. Fractions allowed (tests use 0.01)."
            ),
        ),
        Field(
            "retry_max_delay_seconds",
            Kind.FLOAT,
            60,
            lo=0,
            hi=3600,
            advanced=True,
            help=(
                "Cap of one backoff wait, also of an honoured `Retry-After` (seconds or HTTP date)."
            ),
        ),
        Field(
            "recent_ids_max",
            Kind.INTEGER,
            100_000,
            lo=1000,
            hi=10_000_000,
            advanced=True,
            help=(
                "Cap of the remembered ids per org (see state). 1000..10000000. Also the memory "
                "bound of what is read: an org file or `state import` file with more ids keeps "
                "the newest (the floor rises to the newest dropped), one larger than "
                "`recent_ids_max` x 128 bytes + 1 MiB is refused unread "
                "([docs/state.md](state.md))."
            ),
        ),
    ),
    subsections=(JUMPCLOUD, SIEM),
    unchecked=("state",),  # legacy: the PowerShell script's start_time / end_time
)
# every declared section, in the order the credentials file's keys are listed
SCHEMA = (JUMPCLOUD, SIEM, TOP)


@dataclass(frozen=True)
class Config:
    path: str
    jumpcloud: JumpCloudConfig
    siem: SiemConfig
    state_dir: str
    run_time_budget_seconds: float
    max_retries: int
    retry_base_delay_seconds: float
    retry_max_delay_seconds: float
    recent_ids_max: int
    log_level: str
    legacy_end_time_ms: int | None
    metrics_file: str | None
    heartbeat_url: str | None = field(repr=False)
    log_format: str
    parallel_orgs: int
    secrets: tuple[str, ...] = field(repr=False)
    credentials_file: str | None
    secret_files: tuple[str, ...]  # config and/or credentials file: permission warnings
    # things worth telling the user that do not stop a run (check prints them, run logs them)
    warnings: tuple[str, ...]
    # one line per undeclared key: check refuses them, run only warns (a newer role's new key
    # must not stop a scheduled job)
    unknown_keys: tuple[str, ...] = ()

    @property
    def org_keys(self) -> tuple[str, ...]:
        """Streams with a cursor each: the orgs, then the MSP portal's own activity."""
        orgs = self.jumpcloud.org_ids or (DEFAULT_ORG,)
        provider = self.jumpcloud.provider_id
        return orgs + ((PROVIDER_PREFIX + provider,) if provider else ())


def state_dir(raw: dict, config_dir: str) -> str:
    """Where the state lives (relative: to the config file's directory)."""
    value = TOP.read(raw, "state_dir")
    if not value:
        value = os.path.join(config_dir, "di2siem-state")
    elif not os.path.isabs(value):
        value = os.path.join(config_dir, value)
    return os.path.normpath(value)


def metrics_file(raw: dict, config_dir: str) -> str | None:
    """Where the Prometheus textfile goes (relative: to the config file's directory)."""
    value = TOP.read(raw, "metrics_file")
    if not value or not value.strip():
        return None
    path = os.path.normpath(os.path.join(config_dir, value.strip()))
    if os.path.isdir(path):
        raise ConfigError(
            "metrics_file",
            f"{path} is a directory",
            "name the file, e.g. /var/lib/node_exporter/textfile_collector/di2siem.prom",
        )
    return path


def heartbeat_url(raw: dict) -> str | None:
    """A secret (healthchecks.io-style URLs carry their token): never echoed back."""
    value = TOP.read(raw, "heartbeat_url")
    if not value:
        return None
    try:
        check_url(value, "heartbeat_url")
    except ConfigError as exc:
        problem = "must be an https:// URL without credentials (plain http only on loopback)"
        raise ConfigError("heartbeat_url", problem, "fix heartbeat_url") from exc
    return value.rstrip("/")
