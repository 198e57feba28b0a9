"""The siem sections and secrets of the HTTP intakes, pointed at a simulator or a hostile peer
(tests/hostile/test_hostile_intakes.py, tests/e2e/test_kill_intakes.py)."""

from __future__ import annotations

import base64
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
