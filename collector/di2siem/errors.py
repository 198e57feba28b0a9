"""Every error the collector raises, each knowing which side failed (``side``): JumpCloud, the
SIEM (the intake), the heartbeat endpoint, the state (the local disk) or di2siem itself.

Status, metrics and run summaries read ``side_of(exc)``, never the message: a message says
what happened and how to fix it, in words meant for people, and may quote anything.
"""

from __future__ import annotations

import json
from typing import Any


class Side:
    """The sides, as log lines, ``last_error`` and ``status`` show them."""

    JUMPCLOUD = "JumpCloud"
    SIEM = "SIEM"
    HEARTBEAT = "heartbeat"
    STATE = "state"
    DI2SIEM = "di2siem"


class SidedError(Exception):
    """An error that knows which side failed (one of Side's)."""

    side: str = Side.DI2SIEM


def side_of(exc: BaseException) -> str:
    """Which side failed: the error's own ``side``; di2siem for an error that has none."""
    return exc.side if isinstance(exc, SidedError) else Side.DI2SIEM


# -- exchanges with a peer (transport, the JumpCloud client, the SIEM sink, the heartbeat) --


class FatalError(SidedError):
    """Not worth retrying (bad key, bad request, TLS failure); the message names the key."""

    def __init__(self, message: str, *, side: str) -> None:
        super().__init__(message)
        self.side = side


class RetryableError(SidedError):
    """A transient failure: 429, 5xx, connection errors, timeouts, malformed answers."""

    def __init__(self, message: str, retry_after: float | None = None, *, side: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.side = side


class NoConnection(RetryableError):
    """No connection could be made (refused, a name that does not resolve, no route): nothing
    was sent, so RetryPolicy tries again only briefly (see retry.NO_CONNECTION_WAITS_S)."""


class GaveUpError(SidedError):
    """Retries exhausted; ``side`` is that of the attempt that failed last."""

    def __init__(self, message: str, *, side: str) -> None:
        super().__init__(message)
        self.side = side


class Unreachable(GaveUpError):
    """Retries given up on a peer no connection could be made to (NoConnection each time):
    it answered at once that nobody listens, or has no address, so no deadline was involved."""


class PastDeadline(GaveUpError):
    """Retries stopped because the next attempt would start past the policy's deadline;
    ``cause`` is the last attempt's error."""

    def __init__(self, message: str, cause: str, *, side: str) -> None:
        super().__init__(message, side=side)
        self.cause = cause


class BudgetExceeded(SidedError):
    """An exchange was cut at the run time budget (plus transport.exchange.BUDGET_GRACE_S):
    a stalled peer."""

    def __init__(self, message: str, *, side: str) -> None:
        super().__init__(message)
        self.side = side


class OrgRefused(FatalError):
    """JumpCloud refused the query's org (402 Directory Insights not enabled, 403 not
    accessible). To a shared query this does not say which member: each is served alone."""

    def __init__(self, message: str) -> None:
        super().__init__(message, side=Side.JUMPCLOUD)


class WaitPastBudget(SidedError):
    """The next JumpCloud request could start only after the run's time budget (the
    request-rate cap or a 429 pause)."""

    side = Side.JUMPCLOUD


# -- the state (state_dir) --


class PositionAhead(FatalError):
    """An org's stored cursor or floor lies ahead of JumpCloud's clock: where the org really
    got to is unknown, so nothing is read (jumping to now would skip the events since then)
    until an operator sets it; each run fails the org with this line, other orgs go on."""

    def __init__(self, message: str) -> None:
        super().__init__(message, side=Side.STATE)


class StateError(SidedError):
    """The state file exists but cannot be used."""

    side = Side.STATE


class StateWriteError(SidedError):
    """The state file cannot be written (disk full, read-only, permissions...)."""

    side = Side.STATE


class LockHeld(SidedError):
    """Another di2siem holds state_dir's instance lock (the message: the lock file)."""

    side = Side.STATE


class HandoffError(SidedError):
    """A one-line refusal of ``state export|import``; ``code`` is the exit code (2: usage)."""

    side = Side.STATE

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# -- di2siem itself --


class ConfigError(SidedError):
    """A configuration problem: which key, what is wrong, how to fix it."""

    def __init__(self, key_path: str, problem: str, fix: str = "") -> None:
        self.key_path = key_path
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self, config_path: str | None = None) -> str:
        fix = self.fix or (f"fix the value in {config_path}" if config_path else "fix the value")
        return f"{self.key_path}: {self.problem}; {fix}"


class BudgetReached(SidedError):
    """The run's time budget ended between two batches (progress is saved)."""


class NotReached(SidedError):
    """A probe that got no answer within di2siem's deadline; the message says what happened,
    ``side`` which peer was not reached (di2siem's own when the probe's turn never came)."""

    def __init__(self, message: str, *, side: str = Side.DI2SIEM) -> None:
        super().__init__(message)
        self.side = side


def shown(value: Any) -> str:
    """A value as an error message quotes it: JSON, cut to 60 characters (never a secret's)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
