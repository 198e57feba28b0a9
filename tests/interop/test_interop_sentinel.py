"""Microsoft's own clients against our Sentinel simulator (sandbox sentinel.py), served over
HTTPS with a test CA as the real endpoints are: azure-identity's ClientSecretCredential (MSAL
underneath: the tenant's OpenID discovery document, then a client-credentials token) pointed at
it with ``authority=``, and azure-monitor-ingestion's LogsIngestionClient uploading rows (gzip
bodies, ``Content-Encoding: gzip``, chunked below the 1 MB limit) with success, and reading our
error answers as Azure errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from di2siem_sandbox.sentinel import CLIENT_ID, DCR_ID, STREAM, TENANT, SentinelSimulator
from di2siem_sandbox.tlsfiles import TlsFiles, make_tls_files
from interop_support import official

SECRET = "sentinel-interop-secret-4Rt~8pW1"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def az(tls: TlsFiles) -> Iterator[SentinelSimulator]:
    sim = SentinelSimulator(client_secret=SECRET)
    with sim.serve_tls(tls.server_cert, tls.server_key):
        yield sim


@pytest.fixture
def client(az: SentinelSimulator, tls: TlsFiles, capsys) -> Any:
    identity = official("azure.identity", capsys)
    ingestion = official("azure.monitor.ingestion", capsys)
    credential = identity.ClientSecretCredential(
        TENANT,
        CLIENT_ID,
        SECRET,
        authority=az.url,
        disable_instance_discovery=True,
        connection_verify=tls.ca,
    )
    return ingestion.LogsIngestionClient(az.url, credential, connection_verify=tls.ca)


def rows(n: int, pad: int = 0) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    return [
        {
            "TimeGenerated": now.isoformat(),
            "EventId": f"{i:024x}",
            "EventType": "user_login_attempt",
            "Success": i % 2 == 0,
            "Event": {"id": f"{i:024x}", "note": "ü" + "x" * pad},
        }
        for i in range(n)
    ]


def test_the_official_client_uploads_rows_with_an_entra_token(az, client) -> None:
    logs = rows(50)
    client.upload(rule_id=DCR_ID, stream_name=STREAM, logs=logs)
    assert az.rows == logs
    assert az.stats["tokens_issued"] == 1
    assert az.stats["by_path"] == {
        f"/{TENANT}/v2.0/.well-known/openid-configuration": {"200": 1},
        f"/{TENANT}/oauth2/v2.0/token": {"200": 1},
        f"/dataCollectionRules/{DCR_ID}/streams/{STREAM}": {"204": 1},
    }


def test_a_large_upload_is_chunked_gzipped_and_every_chunk_accepted(az, client) -> None:
    logs = rows(600, pad=4000)  # about 2.4 MB of JSON: the client sends it in 1 MB chunks
    client.upload(rule_id=DCR_ID, stream_name=STREAM, logs=logs)
    assert az.rows == logs
    posts = [status for _, status in az.posts]
    assert len(posts) >= 3 and set(posts) == {204}


def test_our_refusals_read_as_azure_errors(az, client, capsys) -> None:
    exceptions = official("azure.core.exceptions", capsys)
    with pytest.raises(exceptions.HttpResponseError) as raised:
        client.upload(
            rule_id="dcr-00000000000000000000000000000000", stream_name=STREAM, logs=rows(1)
        )
    assert raised.value.status_code == 404
    assert raised.value.error.code == "NotFound"
    az.role_granted = False
    with pytest.raises(exceptions.HttpResponseError) as raised:
        client.upload(rule_id=DCR_ID, stream_name=STREAM, logs=rows(1))
    assert raised.value.status_code == 403 and raised.value.error.code == "OperationFailed"
    assert az.rows == []


def test_a_wrong_secret_is_refused_the_way_entra_refuses_it(az, tls, capsys) -> None:
    identity = official("azure.identity", capsys)
    exceptions = official("azure.core.exceptions", capsys)
    credential = identity.ClientSecretCredential(
        TENANT,
        CLIENT_ID,
        "not-the-secret-000",
        authority=az.url,
        disable_instance_discovery=True,
        connection_verify=tls.ca,
    )
    with pytest.raises(exceptions.ClientAuthenticationError) as raised:
        credential.get_token("https://monitor.azure.com//.default")
    assert "AADSTS7000215" in str(raised.value)
