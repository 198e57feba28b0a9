"""Command line: ``di2siem run|check|status|backfill|state|sandbox``, ``di2siem --version``.

Exit codes: 0 success (also nothing new, lock held, time budget reached); 1 failure after
retries (state keeps what was shipped); 2 configuration or usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .cli_parser import parse
from .errors import ConfigError, HandoffError, LockHeld, Side, StateError

if TYPE_CHECKING:
    from .config import Config
    from .log import Logger

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _config_error(exc, path: str) -> int:
    sys.stderr.write(f"di2siem: config error: {exc.line(path)}\n")
    sys.stderr.flush()
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sandbox":  # the simulators: their own distribution
        try:
            import di2siem_sandbox
        except ModuleNotFoundError as exc:
            if exc.name != "di2siem_sandbox":
                raise
            sys.stderr.write(
                "di2siem sandbox: the simulators are not installed here: pip install"
                " di2siem-sandbox (from a checkout: pip install ./sandbox, or make venv)\n"
            )
            return EXIT_CONFIG
        return int(di2siem_sandbox.main(args_list[1:]) or 0)
    args = parse(args_list)
    if isinstance(args, int):  # a usage error (2) or --help/--version (0)
        return args
    if args.command == "run":
        if args.dry_run:
            return cmd_dry_run(args.config, args.limit, args.env_file)
        return cmd_run(args.config, args.env_file)
    if args.command == "status":
        return cmd_status(args.config, args.json, args.online, args.max_lag, args.env_file)
    if args.command == "backfill":
        return cmd_backfill(args)
    if args.command == "state":
        if args.action is None:
            sys.stderr.write("di2siem state: error: export or import is required\n")
            return EXIT_CONFIG
        return cmd_state(args)
    return cmd_check(args.config, args.offline, args.env_file)


def _load(path: str, env_file: str | None = None):
    """Apply the env file, then parse the config: (config, a logger that redacts every secret
    of both, exit code, permission warnings), or (None, None, exit code, [])."""
    from .config import envfile, load, permission_warning, permission_warnings
    from .log import Logger

    env_secrets: list[str] = []
    try:
        if env_file:
            values = envfile.read(env_file)
            envfile.apply(values)
            env_secrets = envfile.secrets(values)
        cfg = load(path)
    except ConfigError as exc:
        return None, None, _config_error(exc, path), []
    log = Logger()
    log.set_level(cfg.log_level)
    log.set_format(cfg.log_format)
    log.set_secrets(cfg.secrets + tuple(env_secrets))
    notes = permission_warnings(cfg)
    env_warning = permission_warning(env_file) if env_file and env_secrets else None
    return cfg, log, EXIT_OK, notes + ([env_warning] if env_warning else [])


def cmd_run(path: str, env_file: str | None = None) -> int:

    cfg, log, rc, notes = _load(path, env_file)
    if cfg is None:
        return rc
    for warning in notes:
        log.warning(warning)
    for note in cfg.warnings:
        log.warning(note)
    for line in cfg.unknown_keys:  # warned, not refused: a newer role's key must not stop runs
        log.warning(f"{line}; it is ignored")
    from .ops.afterrun import after_run
    from .scheduler.run import Scheduler

    scheduler = None
    try:
        scheduler = Scheduler(cfg, log)
        rc = scheduler.run()
    except ConfigError as exc:
        rc = _config_error(exc, path)
    except KeyboardInterrupt:
        log.error("interrupted; state keeps every accepted batch")
        rc = EXIT_FAILURE
    except Exception as exc:  # last resort: one redacted line, no traceback with locals
        log.error(f"unexpected error: {type(exc).__name__}: {exc}")
        if cfg.log_level == "debug":
            for line in traceback.format_exc().splitlines():
                log.debug(line)
        rc = EXIT_FAILURE
    after_run(cfg, log, scheduler, rc)  # metrics_file, heartbeat_url: never change rc
    return rc


def cmd_dry_run(path: str, limit: int, env_file: str | None = None) -> int:
    cfg, log, rc, notes = _load(path, env_file)
    if cfg is None:
        return rc
    for line in [*notes, *cfg.warnings, *(f"{k}; it is ignored" for k in cfg.unknown_keys)]:
        log.warning(line)
    from .ops.dryrun import dry_run

    try:
        return dry_run(cfg, log, limit)
    except KeyboardInterrupt:
        return EXIT_FAILURE


def cmd_backfill(args: argparse.Namespace) -> int:
    cfg, log, rc, notes = _load(args.config, args.env_file)
    if cfg is None:
        return rc
    from .ops.backfill import Backfill, UsageError, dry_run, plan, retention_warnings
    from .timeutil import now_ms

    try:
        job = plan(cfg, args.since, args.until, args.org, args.service)
    except UsageError as exc:
        sys.stderr.write(f"di2siem backfill: {exc}\n")
        return EXIT_CONFIG
    for line in [*notes, *cfg.warnings, *(f"{k}; it is ignored" for k in cfg.unknown_keys)]:
        log.warning(line)
    for line in retention_warnings(job, now_ms()):
        log.warning(line)
    if args.dry_run:
        return dry_run(cfg, log, job, per_service=bool(args.service))
    try:
        return Backfill(cfg, log, job).run()
    except ConfigError as exc:
        return _config_error(exc, args.config)
    except (LockHeld, StateError) as exc:
        log.error(f"backfill not started: {exc}")
    except KeyboardInterrupt:
        log.error("interrupted; the same command resumes the backfill")
    return EXIT_FAILURE


def cmd_status(
    path: str, as_json: bool, online: bool, max_lag: float, env_file: str | None = None
) -> int:
    cfg, log, rc, _ = _load(path, env_file)
    if cfg is None:
        return rc
    from .ops.status import run_status

    return run_status(cfg, as_json, online, max_lag, log)


def cmd_state(args: argparse.Namespace) -> int:
    """``state export|import``: one summary line on stderr (stdout may carry the export)."""
    cfg, log, rc, _ = _load(args.config)
    if cfg is None:
        return rc
    from .state.handoff import export_org, import_org

    try:
        if args.action == "export":
            line = export_org(cfg, args.org, args.output, args.wait)
        else:
            line = import_org(cfg, args.file, args.org, args.force, args.wait)
    except HandoffError as exc:
        sys.stderr.write(log.redact(f"di2siem state {args.action}: error: {exc}") + "\n")
        return exc.code
    sys.stderr.write(log.redact(f"di2siem state {args.action}: {line}") + "\n")
    return EXIT_OK


def _verdict(name: str, ok: bool | None, detail: str, log) -> None:
    word = "ok" if ok else ("warning" if ok is None else "FAILED")
    line = log.redact(f"di2siem check {name}: {word} - {detail}")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _check_local_outputs(cfg: Config, log: Logger) -> bool:
    """metrics_file and heartbeat_url, without the network; True when one failed. The heartbeat
    is never pinged here: a ping from check would tell the dead man's switch a run happened."""
    failed = False
    if cfg.metrics_file:
        from .ops.metrics import directory_problem

        problem = directory_problem(cfg.metrics_file)
        failed = problem is not None
        detail = problem or f"{os.path.dirname(cfg.metrics_file)} is writable by this user"
        _verdict("metrics_file", not failed, detail, log)
    if cfg.heartbeat_url:
        _verdict(
            "heartbeat_url",
            True,
            "a well-formed URL; not pinged (a ping from check would count as a run)",
            log,
        )
    return failed


def cmd_check(path: str, offline: bool, env_file: str | None = None) -> int:
    cfg, log, rc, notes = _load(path, env_file)
    if cfg is None:
        return rc
    if cfg.unknown_keys:  # run only warns; check is where a typo must stop the deploy
        for line in cfg.unknown_keys:
            fix = f"rename or remove it in {cfg.path}"
            sys.stderr.write(log.redact(f"di2siem: config error: {line}; {fix}") + "\n")
        return EXIT_CONFIG
    orgs = ",".join(cfg.jumpcloud.org_ids) or "(single org)"
    if cfg.jumpcloud.provider_id:
        orgs += f" provider={cfg.jumpcloud.provider_id}"
    auth = "service_account" if cfg.jumpcloud.service_account else "api_key"
    _verdict(
        "config",
        True,
        f"{cfg.path} is valid: format={cfg.siem.format} siem_url={cfg.siem.url} "
        f"jumpcloud_url={cfg.jumpcloud.base_url} services={','.join(cfg.jumpcloud.services)} "
        f"orgs={orgs} auth={auth} state_dir={cfg.state_dir}",
        log,
    )
    for warning in notes:
        _verdict("permissions", None, warning, log)
    for note in cfg.warnings:
        _verdict("config", None, note, log)
    if offline:
        return EXIT_OK
    failed = False

    # state_dir: writable, or creatable in its existing parent (not created here)
    from .state.layout import missing_parent, unsafe_state_dir

    exists = os.path.exists(cfg.state_dir)
    probe_dir = cfg.state_dir if exists else os.path.dirname(cfg.state_dir)
    unsafe = unsafe_state_dir(cfg.state_dir) if exists else None
    missing = None if exists else missing_parent(cfg.state_dir)
    if missing is not None:
        _verdict("state_dir", False, f"{missing[0]} (state_dir: {missing[1]})", log)
        failed = True
    elif unsafe is not None:
        _verdict("state_dir", False, f"{unsafe[0]} (state_dir: {unsafe[1]})", log)
        failed = True
    elif os.path.isdir(probe_dir) and os.access(probe_dir, os.W_OK | os.X_OK):
        what = "writable" if exists else f"can be created in {probe_dir}"
        _verdict("state_dir", True, f"{cfg.state_dir} {what}", log)
    else:
        _verdict(
            "state_dir",
            False,
            f"{cfg.state_dir} is not writable by this user (state_dir: fix owner/mode)",
            log,
        )
        failed = True

    failed = _check_local_outputs(cfg, log) or failed

    failed = _check_endpoints(cfg, log) or failed
    sys.stdout.write(f"di2siem check: {'FAILED' if failed else 'passed'}\n")
    return EXIT_FAILURE if failed else EXIT_OK


def _check_endpoints(cfg: Config, log: Logger) -> bool:
    """Prove JumpCloud (a service account's token, then one small query per org, side by
    side under the request-rate cap) and the SIEM (an empty request, meanwhile), each side
    within one deadline of its own timeout_seconds (probes.py) whatever the number of orgs;
    True when one failed. Whatever was not reached in time is named in a ``deadline``
    verdict."""
    from .intakes import intake_for
    from .intakes.delivery import BatchDelivery, probe_line
    from .ops.probes import PROBE_DEADLINE, Deadline, SideBySide, side_by_side, unreached_cause
    from .source.client import JumpCloudClient
    from .source.tokens import TokenHolder
    from .throttle import RateLimiter
    from .timeutil import format_ms, now_ms
    from .transport.retry import RetryPolicy

    jc_deadline = Deadline(cfg.jumpcloud.timeout_seconds)
    siem_deadline = Deadline(cfg.siem.timeout_seconds)

    def policy(deadline: Deadline) -> RetryPolicy:
        return RetryPolicy(
            min(cfg.max_retries, 2),
            cfg.retry_base_delay_seconds,
            min(cfg.retry_max_delay_seconds, 5),
            deadline=deadline.last_start,
        )

    def start_sink():
        sink = BatchDelivery(intake_for(cfg.siem), policy(siem_deadline))
        return (lambda _: sink.probe()), sink.close

    siem = SideBySide(["siem"], start_sink, 1, siem_deadline)  # the SIEM meanwhile
    limiter = RateLimiter(cfg.jumpcloud.max_requests_per_second)  # one probe per org
    tokens = TokenHolder()
    since = format_ms(now_ms() - 3_600_000)

    def client() -> JumpCloudClient:
        return JumpCloudClient(
            cfg.jumpcloud, policy(jc_deadline), secrets=log, limiter=limiter, tokens=tokens
        )

    def start_token():
        jc = client()
        return (lambda _: jc.token()), jc.close

    def start_prober():
        jc = client()
        return (lambda org: jc.probe(since, org)), jc.close

    failed = False
    unreached_orgs: list[str] = []
    unreached: list[str] = []  # what was not reached, "in N s"

    def failure(label: str, outcome: object, side: str, deadline: Deadline) -> bool:
        """A FAILED verdict; True when the peer was not reached in time."""
        nonlocal failed
        failed = True
        cause = unreached_cause(outcome, side)
        if cause is None:
            _verdict(label, False, str(outcome), log)
            return False
        _verdict(label, False, f"not reached within the {deadline.label}: {cause}", log)
        return True

    orgs = cfg.org_keys
    if cfg.jumpcloud.service_account:
        accepted = "the service account token (jumpcloud.client_id)"
        token = side_by_side(["token"], start_token, 1, jc_deadline)["token"]
        if isinstance(token, str):
            detail = f"{cfg.jumpcloud.token_url} issued a token for jumpcloud.client_id"
            _verdict("jumpcloud token", True, detail, log)
        else:
            if failure("jumpcloud token", token, Side.JUMPCLOUD, jc_deadline):
                unreached.append(f"the JumpCloud token endpoint in {jc_deadline.seconds:g} s")
            orgs = ()
    else:
        accepted = "jumpcloud.api_key"
    outcomes = side_by_side(orgs, start_prober, cfg.parallel_orgs, jc_deadline) if orgs else {}
    for org, outcome in outcomes.items():
        label = "jumpcloud" if len(cfg.org_keys) == 1 else f"jumpcloud org={org}"
        if isinstance(outcome, int):
            seen = "some" if outcome else "none"
            detail = (
                f"{cfg.jumpcloud.events_url} accepted {accepted} (events in the last hour: {seen})"
            )
            _verdict(label, True, detail, log)
        elif failure(label, outcome, Side.JUMPCLOUD, jc_deadline):
            unreached_orgs.append(org)
    if unreached_orgs:
        unreached.append(
            f"JumpCloud for {len(unreached_orgs)} of {len(cfg.org_keys)} orgs "
            f"({', '.join(unreached_orgs)}) in {jc_deadline.seconds:g} s"
        )

    status = siem.outcomes()["siem"]
    if isinstance(status, (int, str)):
        _verdict("siem", True, probe_line(status, cfg.siem.url), log)
    elif failure("siem", status, Side.SIEM, siem_deadline):
        unreached.append(f"the SIEM in {siem_deadline.seconds:g} s")
    if unreached:
        _verdict(
            "deadline",
            False,
            f"not reached within the deadline ({PROBE_DEADLINE}, with each side's own "
            f"timeout_seconds): {'; '.join(unreached)}",
            log,
        )
    return failed
