"""The siem sections and secrets of the HTTP intakes, pointed at a simulator or a hostile peer
(tests/hostile/test_hostile_intakes.py, tests/e2e/test_kill_intakes.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from di2siem_sandbox.sentinel import CLIENT_ID, DCR_ID, TENANT

HEC_TOKEN = "6f1c2a9e-5b7d-4e3f-9a81-2c4d6e8f0a1b"
ES_KEY = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
AZ_SECRET = "sentinel-app-secret-7Qx~9vL2"
OTLP_TOKEN = "otlp-secret-3c9e1f7a20b8d5"
INTAKE_SECRETS = (HEC_TOKEN, ES_KEY, AZ_SECRET, OTLP_TOKEN)
HTTP_INTAKES = ("splunk_hec", "elasticsearch", "sentinel", "otlp")
BATCH = 10


def siem_section(
    intake: str, url: str, authority: str | None = None, batch: int = BATCH
) -> dict[str, Any]:
    """The siem section of ``intake`` pointed at ``url`` (Sentinel's token endpoint at
    ``authority``)."""
    common = {"batch_size": batch, "batch_delay_milliseconds": 0}
    if intake == "splunk_hec":
        return {**common, "format": intake, "url": url, "token": HEC_TOKEN, "ack": True,
                "ack_poll_seconds": 0.02}  # fmt: skip
    if intake == "elasticsearch":
        return {**common, "format": intake, "url": url, "api_key": ES_KEY}
    if intake == "sentinel":
        return {**common, "format": intake, "endpoint": url, "authority": authority or url,
                "dcr_immutable_id": DCR_ID, "tenant_id": TENANT, "client_id": CLIENT_ID,
                "client_secret": AZ_SECRET}  # fmt: skip
    assert intake == "otlp"
    return {**common, "format": intake, "url": url + "/v1/logs",
            "headers": {"Authorization": f"Bearer {OTLP_TOKEN}"}}  # fmt: skip


def assert_no_intake_secrets(text: str, *tokens: str) -> None:
    """None of the intakes' secrets (nor these issued tokens) in ``text``."""
    for secret in (*INTAKE_SECRETS, *tokens):
        assert secret not in text, "an intake secret reached the output"


class IntakeRun:
    """A config file that points the collector at the JumpCloud simulator and one intake, and
    the in-process runner whose output must hold none of the intake's secrets (``secrets``,
    or those ``leaks`` names at the time)."""

    secrets: tuple[str, ...] = ()

    def __init__(self, tmp: Path, jc: Any) -> None:
        self.jc = jc
        self.path = tmp / "config.json"
        self.state_dir = tmp / "state"

    def write_siem(self, siem: dict[str, Any], **top: Any) -> None:
        """The config with this siem section (keys set to None left out) and top-level keys."""
        from conftest import FAST, legacy_config

        cfg = legacy_config(self.jc.url, "http://127.0.0.1:9")
        cfg["siem"] = {key: value for key, value in siem.items() if value is not None}
        self.path.write_text(json.dumps({**cfg, **FAST, "state_dir": str(self.state_dir), **top}))
        self.path.chmod(0o600)

    def leaks(self) -> tuple[str, ...]:
        return self.secrets

    def run(self, capsys: Any, command: str = "run") -> tuple[int, str]:
        from conftest import assert_no_secrets
        from di2siem.cli import main

        capsys.readouterr()
        rc = main([command, "--config", str(self.path)])
        out, err = capsys.readouterr()
        assert_no_secrets(out, err)
        for secret in self.leaks():
            assert secret not in out + err, "an intake secret reached the output"
        return rc, out + err
