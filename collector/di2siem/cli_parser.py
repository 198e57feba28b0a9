"""The command line's grammar: every command and option of ``di2siem``, and the one-line
refusal of an option a command does not have (``run --conifg x`` is an unknown option with a
suggestion, not a missing ``--config``)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from . import __version__

EXIT_USAGE = 2
COMMANDS = ("run", "check", "status", "backfill", "state", "sandbox")
# options whose value may start with a dash (--since -7d): joined to it before parsing
DASHED_VALUES = ("--since", "--until")
_NEGATIVE_NUMBER = re.compile(r"-\d+(\.\d*)?$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="di2siem",
        description="Ship JumpCloud Directory Insights events to Coralogix or any HTTP JSON "
        "log intake, losing nothing.",
    )
    parser.add_argument("--version", action="version", version=f"di2siem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    run = sub.add_parser("run", help="one poll-and-ship cycle (cron runs this every minute)")
    _config_option(run)
    _env_file_option(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="ship and write nothing: print the first records the next run would ship, "
        "exactly as the intake would receive them (the request bodies)",
    )
    run.add_argument(
        "--limit",
        type=_count,
        default=10,
        metavar="N",
        help="with --dry-run: how many records to print (default 10)",
    )
    check = sub.add_parser(
        "check", help="validate the configuration; online, also prove credentials and endpoints"
    )
    _config_option(check)
    _env_file_option(check)
    check.add_argument(
        "--offline",
        action="store_true",
        help="validate the file only: no network, no state directory (installer validate)",
    )
    status = sub.add_parser(
        "status", help="is every org shipping? (read only: safe while a run is in progress)"
    )
    _config_option(status)
    _env_file_option(status)
    status.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    status.add_argument(
        "--online", action="store_true", help="also ask JumpCloud for each org's backlog"
    )
    status.add_argument(
        "--max-lag",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="unhealthy when an org's last success is older than this (default 600)",
    )
    _backfill_parser(sub)
    _state_parser(sub)
    sub.add_parser(
        "sandbox",
        help="run the JumpCloud and Coralogix simulators on loopback (stop with Ctrl-C)",
    )
    return parser


def _config_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", required=True, metavar="PATH", help="JSON configuration file")


def _env_file_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--env-file",
        metavar="PATH",
        help="NAME=value lines set in the environment first (HTTPS_PROXY, NO_PROXY, ...); "
        "the syntax of systemd's EnvironmentFile=",
    )


def _backfill_parser(sub) -> None:
    about = (
        "ship every event of a past window [since, until) again, on a resumable job of its own "
        "(never moves the live cursor); TIME is RFC 3339 (2026-11-01T00:00:00Z) or back from "
        "now (-7d, -36h, -90m)"
    )
    backfill = sub.add_parser("backfill", help=about, description=about)
    _config_option(backfill)
    _env_file_option(backfill)
    backfill.add_argument("--since", required=True, metavar="TIME", help="the window's start")
    backfill.add_argument("--until", metavar="TIME", help="the window's end (default: now)")
    backfill.add_argument(
        "--org", action="append", metavar="ORG", help="only this org (repeat; default: all)"
    )
    backfill.add_argument(
        "--service",
        action="append",
        metavar="NAME",
        help="only this service (repeat; default: the config's services)",
    )
    backfill.add_argument(
        "--dry-run",
        action="store_true",
        help="ship and write nothing: count the window's events per org (and per service)",
    )


def _state_parser(sub) -> None:
    state = sub.add_parser(
        "state", help="move an org's cursor and recent ids between hosts (export / import)"
    )
    actions = state.add_subparsers(dest="action", metavar="{export,import}")
    wait = {
        "type": _wait_seconds,
        "default": 90.0,
        "metavar": "SECONDS",
        "help": "how long to wait for a running run to release the lock (default 90)",
    }
    export = actions.add_parser("export", help="write one org's state as a versioned JSON file")
    _config_option(export)
    export.add_argument("--org", required=True, metavar="ID", help="org id (_default: no org_ids)")
    export.add_argument("--output", metavar="FILE", help="write here (mode 0600) instead of stdout")
    export.add_argument("--wait", **wait)
    imp_help = (
        "install an exported org state on this host (refused: a cursor or floor more than "
        "5 minutes past this host's clock, a file over recent_ids_max x 128 B + 1 MiB)"
    )
    imp = actions.add_parser("import", help=imp_help, description=imp_help)
    _config_option(imp)
    imp.add_argument("file", metavar="FILE", help="a file written by di2siem state export")
    imp.add_argument("--org", metavar="ID", help="refuse the file unless it holds this org")
    imp.add_argument(
        "--force",
        action="store_true",
        help="also when this host's state of the org is newer (goes back to the file's point)",
    )
    imp.add_argument("--wait", **wait)


def _count(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 1, "a whole number of records >= 1"))


def _seconds(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < float("inf"), "a positive number of seconds")


def _wait_seconds(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < float("inf"), "a number of seconds >= 0")


def _number(text: str, kind: type, fits, what: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not fits(value):
        raise argparse.ArgumentTypeError(f"must be {what} (got {text!r})")
    return value


def parse(argv: Sequence[str]) -> argparse.Namespace | int:
    """The parsed command line (with a command), or the exit code when it is refused (2)
    or answered (--help, --version: 0). An unknown option is refused first, naming it and
    the closest option of its command, so that a typo is not reported as a missing --config."""
    parser = build_parser()
    argv = _join_dashed_values(list(argv))
    refused = _unknown_option(parser, argv)
    if refused is not None:
        command, problem = refused
        command.print_usage(sys.stderr)
        sys.stderr.write(f"{command.prog}: error: {problem}\n")
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"di2siem: error: a command is required ({', '.join(COMMANDS)})\n")
        return EXIT_USAGE
    return args


def _join_dashed_values(words: list[str]) -> list[str]:
    """``--since -7d`` as ``--since=-7d``: argparse would read -7d as an option."""
    out: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word in DASHED_VALUES and index + 1 < len(words) and words[index + 1].startswith("-"):
            out.append(f"{word}={words[index + 1]}")
            index += 2
            continue
        out.append(word)
        index += 1
    return out


def _unknown_option(
    parser: argparse.ArgumentParser, words: list[str]
) -> tuple[argparse.ArgumentParser, str] | None:
    """(the command's parser, ``unknown option --conifg (did you mean --config?)``) for the
    first option that the command it follows does not have, or None. The words are walked
    command by command: ``state export --org x`` checks ``--org`` against state export's."""
    while True:
        choices = _subcommands(parser)
        # a parser with commands has no option that takes a value: its first word is one
        at = next((i for i, w in enumerate(words) if not w.startswith("-")), None)
        mine = words[:at] if choices else words
        if "--" in mine:
            mine = mine[: mine.index("--")]  # after "--" every word is an argument
        problem = _first_unknown(parser, mine)
        if problem is not None:
            return parser, problem
        if not choices or at is None or words[at] not in choices:
            return None  # argparse says the rest (a missing or unknown command)
        parser, words = choices[words[at]], words[at + 1 :]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse has no public way to list a parser's subcommands or options
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for a in parser._actions for s in a.option_strings if s.startswith("--"))


def _first_unknown(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """The problem with the first option in words that the parser does not have (a prefix
    of one is fine: argparse takes abbreviations), or None."""
    import difflib  # a usage error's hint only

    known = _options(parser)
    for word in words:
        if not word.startswith("-") or len(word) < 3 or _NEGATIVE_NUMBER.match(word):
            continue  # a value, a short option (-h) or a negative number
        name = word.split("=", 1)[0]
        if name.startswith("--") and any(option.startswith(name) for option in known):
            continue
        close = difflib.get_close_matches(name.lstrip("-"), [k[2:] for k in known], n=1)
        hint = f"did you mean --{close[0]}?" if close else "its options: " + ", ".join(known)
        return f"unknown option {name} ({hint})"
    return None
