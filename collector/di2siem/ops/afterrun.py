"""What every run leaves behind for the operator's tools once it is over: the Prometheus
textfile (``metrics_file``) and the dead man's switch (``heartbeat_url``).

Neither can change the run's outcome or the state. A run that found the lock held by a
healthy run reports nothing (that run reports when it ends); a stuck lock pings ``/fail``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import StateError
from ..log import Logger
from ..timeutil import format_ms, now_ms, parse_ms_or_none

if TYPE_CHECKING:
    from ..scheduler.run import Scheduler


def _org_views(cfg: Config, scheduler: Scheduler | None) -> list[tuple[str, int | None, dict]]:
    """(org, cursor ms, ops) per configured org: the run's own state when it loaded one,
    else a read-only look at the file (a run that failed before loading it)."""
    views: list[tuple[str, int | None, dict[str, Any]]] = []
    if scheduler is not None and scheduler.store.orgs:
        for org in cfg.org_keys:
            state = scheduler.store.orgs.get(org)
            views.append((org, None, {}) if state is None else (org, state.cursor_ms, state.ops))
        return views
    from .status import read_state

    try:
        orgs = read_state(cfg.state_dir, cfg.org_keys)
    except StateError:
        orgs = {}
    for org in cfg.org_keys:
        data = orgs.get(org) if isinstance(orgs.get(org), dict) else {}
        ops = data.get("ops") if isinstance(data.get("ops"), dict) else {}
        views.append((org, parse_ms_or_none(data.get("cursor")), ops))
    return views


def write_metrics(cfg: Config, log: Logger, scheduler: Scheduler | None, rc: int) -> None:
    assert cfg.metrics_file is not None
    views = _org_views(cfg, scheduler)
    if rc != 0 and (scheduler is None or not scheduler.recorder.finished):
        # failed before serving any org (state unusable, state_dir refused...): the counters
        # stay as saved, the gauges say the run failed now
        now = format_ms(now_ms())
        views = [(o, c, {**ops, "last_run": now, "last_status": "failed"}) for o, c, ops in views]
    from . import metrics  # only when metrics_file is set

    try:
        metrics.write_atomically(cfg.metrics_file, metrics.render(views))
    except OSError as exc:
        log.warning(
            f"metrics_file not written: {exc.strerror or exc}; check that its directory "
            "exists and is writable by this user",
            metrics_file=cfg.metrics_file,
        )


def after_run(cfg: Config, log: Logger, scheduler: Scheduler | None, rc: int) -> None:
    lock_held = scheduler is not None and scheduler.lock_held
    if lock_held and rc == 0:
        return
    if cfg.metrics_file and not lock_held:
        write_metrics(cfg, log, scheduler, rc)
    if cfg.heartbeat_url:
        # the ping ends within the run's bound (budget + grace): the process exit never waits
        # past it; a run that failed before its scheduler existed has barely started
        deadline = None
        if scheduler is not None and scheduler.clock is time.monotonic:
            deadline = scheduler.deadline
        from . import heartbeat  # only when heartbeat_url is set

        heartbeat.ping(cfg.heartbeat_url, rc == 0, log, cfg.siem.ca_bundle, deadline)
