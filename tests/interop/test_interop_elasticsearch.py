"""Elastic's own Python client (``elasticsearch``, over ``elastic-transport``) against our
Elasticsearch simulator (sandbox elasticsearch.py): it must take what the client sends (vendor
media types with ``compatible-with``, ApiKey auth) and answer so that the client accepts it
(``X-Elastic-Product: Elasticsearch`` on every answer, else the client refuses the server;
bulk items, 409 on a duplicate ``_id``, has_privileges, errors as the client's exceptions).
The simulated cluster has the client's major version, as a real deployment pairs them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from di2siem_sandbox.elasticsearch import DEFAULT_DATA_STREAM, ElasticsearchSim
from di2siem_sandbox.plumbing.base import BaseSimulator
from interop_support import official

KEY_ID, KEY = "VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"
API_KEY = base64.b64encode(f"{KEY_ID}:{KEY}".encode()).decode()


@pytest.fixture
def es(capsys) -> Any:
    return official("elasticsearch", capsys)


@pytest.fixture
def cluster(es) -> Iterator[ElasticsearchSim]:
    major = es.__versionstr__.split(".")[0]
    with ElasticsearchSim(api_key=API_KEY, version=f"{major}.1.0") as sim:
        yield sim


@pytest.fixture
def client(es, cluster: ElasticsearchSim) -> Any:
    return es.Elasticsearch(cluster.url, api_key=API_KEY, retry_on_timeout=False, max_retries=0)


def actions(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "_op_type": "create",
            "_index": DEFAULT_DATA_STREAM,
            "_id": f"{i:024x}",
            "_source": {"@timestamp": "2026-12-03T10:00:00.000Z", "id": f"{i:024x}", "n": i},
        }
        for i in range(start, start + n)
    ]


def test_the_client_accepts_the_cluster(client, cluster, es) -> None:
    info = client.info()
    assert info["version"]["number"] == cluster.version
    assert info["tagline"] == "You Know, for Search"


def test_helpers_bulk_creates_into_the_data_stream_and_a_duplicate_id_is_409(
    client, cluster, es
) -> None:
    helpers = official("elasticsearch.helpers")
    created, errors = helpers.bulk(client, actions(120), chunk_size=50)
    assert (created, errors) == (120, [])
    assert cluster.ids() == [f"{i:024x}" for i in range(120)]
    assert cluster.docs()[7]["n"] == 7
    created, errors = helpers.bulk(client, actions(20, start=110), raise_on_error=False)
    assert created == 10 and len(errors) == 10
    for error in errors:
        item = error["create"]
        assert item["status"] == 409
        assert item["error"]["type"] == "version_conflict_engine_exception"
    assert len(cluster.ids()) == 130
    with pytest.raises(helpers.BulkIndexError):  # the helper's own reading of a failed item
        helpers.bulk(client, actions(1))


def test_client_bulk_reads_item_errors_inside_a_200(client, cluster) -> None:
    cluster.item_answers = {"b": [429]}
    cluster.refuse_ids = {"c"}
    operations: list[dict[str, Any]] = []
    for doc_id in ("a", "b", "c"):
        operations += [{"create": {"_id": doc_id}}, {"@timestamp": "2026-12-03T10:00:00Z"}]
    answer = client.bulk(index=DEFAULT_DATA_STREAM, operations=operations)
    assert answer.meta.status == 200 and answer["errors"] is True
    statuses = [item["create"]["status"] for item in answer["items"]]
    assert statuses == [201, 429, 400]
    assert answer["items"][1]["create"]["error"]["type"] == "es_rejected_execution_exception"


def test_has_privileges_answers_the_create_doc_question(client, cluster) -> None:
    asked = [{"names": [DEFAULT_DATA_STREAM], "privileges": ["create_doc"]}]
    answer = client.security.has_privileges(index=asked)
    assert answer["has_all_requested"] is True
    assert answer["index"] == {DEFAULT_DATA_STREAM: {"create_doc": True}}
    cluster.can_create = False
    answer = client.security.has_privileges(index=asked)
    assert answer["has_all_requested"] is False


def test_a_wrong_key_is_the_clients_authentication_error(es, cluster) -> None:
    wrong = base64.b64encode(b"someone:else").decode()
    client = es.Elasticsearch(cluster.url, api_key=wrong, max_retries=0)
    with pytest.raises(es.AuthenticationException) as raised:
        client.info()
    assert raised.value.meta.status == 401
    assert raised.value.error == "security_exception"


def test_a_cluster_one_major_older_refuses_the_client_as_elasticsearch_does(es) -> None:
    """The control for the compatibility check: a 9.x client against an 8.x cluster."""
    major = int(es.__versionstr__.split(".")[0])
    with ElasticsearchSim(api_key=API_KEY, version=f"{major - 1}.19.0") as older:
        client = es.Elasticsearch(older.url, api_key=API_KEY, max_retries=0)
        with pytest.raises(es.BadRequestError) as raised:
            client.info()
    assert raised.value.error == "media_type_header_exception"
    assert f"but found {major}" in str(raised.value.body)


def test_without_the_product_header_the_client_refuses_the_server(es, cluster) -> None:
    """The control for X-Elastic-Product: the client really checks it."""

    class Impostor(ElasticsearchSim):
        def dispatch(self, request):  # our answers without the header
            return BaseSimulator.dispatch(self, request)

    with Impostor(api_key=API_KEY, version=cluster.version) as impostor:
        client = es.Elasticsearch(impostor.url, api_key=API_KEY, max_retries=0)
        with pytest.raises(es.UnsupportedProductError):
            client.info()
