"""The secret registry: one object per command (the command's ``log.Logger``) that knows every
secret, the configured ones and those obtained at run time (a service account's access
token), and redacts them. The log and every report a command prints (``status``'s table and
JSON, ``check``'s verdicts) redact through it, and whatever obtains a secret at run time takes
it as a required argument (``JumpCloudClient(..., secrets=)``), so no command can forget to
register what it learns."""

from __future__ import annotations

from typing import Protocol


class SecretRegistry(Protocol):
    def add_secret(self, secret: str) -> None:
        """Redact ``secret`` from now on, in every form it may show up in."""

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced."""


def require_registry(secrets: object, owner: str) -> SecretRegistry:
    """``secrets`` if it is a registry; a TypeError naming ``owner`` otherwise (None too)."""
    if not (
        callable(getattr(secrets, "add_secret", None))
        and callable(getattr(secrets, "redact", None))
    ):
        raise TypeError(f"{owner} needs the command's secret registry (secrets=), got {secrets!r}")
    return secrets  # type: ignore[return-value]
