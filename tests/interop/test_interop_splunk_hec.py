"""Our Splunk HEC simulator (sandbox splunk_hec.py) against what no one here wrote. Splunk ships
no Python HEC client of its own; what it documents are curl commands ("HTTP Event Collector
examples", "About HTTP Event Collector Indexer Acknowledgment"): they run here as the docs
print them, the same token, headers and bodies, only the host replaced by our loopback
simulator. Then the most used HEC client on PyPI, ``splunk-handler`` (a logging handler),
ships log records through it."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from di2siem_sandbox.splunk_hec import SplunkHecSimulator
from interop_support import official, unavailable

DOCS_TOKEN = "CF179AE4-3C99-45F5-A7CC-3284AA91CF67"  # the docs' example token
ACK_TOKEN = "BD274822-96AA-4DA6-90EC-18940FB2414C"  # the ack page's example token
ACK_CHANNEL = "FE0ECFAD-13D5-401B-847D-77833BD77131"
CURL = "curl"  # a test that runs it asks for the curl_binary fixture first


@pytest.fixture
def curl_binary(capsys) -> str:
    found = shutil.which("curl")
    if found is None:
        unavailable("curl", "not installed; make apt-deps as root installs it", capsys)
    return str(found)


@pytest.fixture
def hec() -> Iterator[SplunkHecSimulator]:
    with SplunkHecSimulator(token=DOCS_TOKEN) as sim:
        sim.tokens[ACK_TOKEN] = {"ack": True, "disabled": False}
        yield sim


def curl(url: str, *args: str) -> dict[str, Any]:
    """curl as the docs call it (-k dropped: plain http on loopback); the JSON answer."""
    done = subprocess.run([CURL, "-sS", url, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def curl_post(url: str, token: str, data: str) -> dict[str, Any]:
    """The docs' form: curl URL -H "Authorization: Splunk <token>" -d '<data>'."""
    return curl(url, "-H", f"Authorization: Splunk {token}", "-d", data)


def test_the_documented_curl_examples_are_accepted(hec: SplunkHecSimulator, curl_binary) -> None:
    # Basic example
    answer = curl_post(
        f"{hec.url}/services/collector",
        DOCS_TOKEN,
        '{"event": "Hello, world!", "sourcetype": "manual"}',
    )
    assert answer == {"text": "Success", "code": 0}
    # Batching example
    answer = curl_post(
        f"{hec.url}/services/collector",
        DOCS_TOKEN,
        '{"event": "Pony 1 has left the barn"}{"event": "Pony 2 has left the barn"}'
        '{"event": "Pony 3 has left the barn", "nested": {"key1": "value1"}}',
    )
    assert answer == {"text": "Success", "code": 0}
    assert hec.events() == [
        "Hello, world!",
        "Pony 1 has left the barn",
        "Pony 2 has left the barn",
        "Pony 3 has left the barn",
    ]
    assert hec.received[0]["sourcetype"] == "manual"
    # health
    assert curl(f"{hec.url}/services/collector/health") == {"text": "HEC is healthy", "code": 17}


def test_the_documented_indexer_acknowledgment_exchange(
    hec: SplunkHecSimulator, curl_binary
) -> None:
    answer = curl_post(
        f"{hec.url}/services/collector/event?channel={ACK_CHANNEL}",
        ACK_TOKEN,
        '{"event": "Hello, world!", "sourcetype": "mysourcetype"}',
    )
    assert answer == {"text": "Success", "code": 0, "ackId": 0}
    answer = curl_post(
        f"{hec.url}/services/collector/ack?channel={ACK_CHANNEL}",
        ACK_TOKEN,
        '{"acks":[0]}',
    )
    assert answer == {"acks": {"0": True}}
    # without a channel, a token with ack answers code 10 ("Data channel is missing")
    answer = curl_post(
        f"{hec.url}/services/collector/event",
        ACK_TOKEN,
        '{"event": "Hello, world!"}',
    )
    assert answer == {"text": "Data channel is missing", "code": 10}


def test_the_pypi_hec_client_ships_log_records(hec: SplunkHecSimulator, capsys) -> None:
    handler_module = official("splunk_handler", capsys)
    handler = handler_module.SplunkHandler(
        host="127.0.0.1",
        port=hec.port,
        token=DOCS_TOKEN,
        index="main",
        protocol="http",
        flush_interval=0,
        sourcetype="di2siem:interop",
        source="interop",
        hostname="di2siem-test",
        retry_count=0,
    )
    logger = logging.getLogger("di2siem.interop.splunk")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("first record ü")
        logger.warning("second record")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert hec.events() == ["first record ü", "second record"]
    assert {e["sourcetype"] for e in hec.received} == {"di2siem:interop"}
    assert {e["index"] for e in hec.received} == {"main"}
    assert hec.stats["by_status"] == {"200": 2}
