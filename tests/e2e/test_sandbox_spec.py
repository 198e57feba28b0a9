"""Spec tests: each fact of shared/reference/jumpcloud-di-api.md that the JumpCloud simulator
models gets a test over real HTTP that fails if the simulator drifts from it. The simulator
shares our assumptions; these tests pin the assumptions to the reference instead."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from conftest import REFERENCE_SERVICES
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.events import burst_events, generate_events, parse_ts

KEY = "spec-jumpcloud-key"
EVENTS = "/insights/directory/v1/events"
START = "2022-12-18T00:00:00.000Z"
END = "2022-12-19T00:00:00.000Z"
ORG_A = "aaaaaaaaaaaaaaaaaaaaaaaa"
ORG_B = "bbbbbbbbbbbbbbbbbbbbbbbb"
ORG_C = "cccccccccccccccccccccccc"
PROVIDER = "5f0c1b2a3d4e5f6a7b8c9d0e"
ENUM = list(REFERENCE_SERVICES)


@pytest.fixture(scope="module")
def sim() -> Iterator[JumpCloudSimulator]:
    with JumpCloudSimulator(
        api_key=KEY, org_ids=[ORG_A, ORG_B, ORG_C], provider_id=PROVIDER, seed=3
    ) as s:
        s.generate(40, START, END, org=ORG_A)
        s.generate(30, START, END, org=ORG_B)
        s.generate(20, START, END, org=ORG_C)
        events = generate_events(6, START, END, seed=11, org="")
        for event in events:
            event["provider"] = PROVIDER
            event["initiated_by"]["type"] = "provider_admin"
        s.add_events(events, org=s.provider_store)
        yield s


def post(
    sim: JumpCloudSimulator,
    body: Any,
    headers: list[tuple[str, str]] | None = None,
    path: str = EVENTS,
) -> tuple[int, dict[str, str], Any]:
    """POST with http.client, so one header name may be sent several times."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        data = json.dumps(body).encode()
        conn.putrequest("POST", path)
        for name, value in [
            ("x-api-key", KEY),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *(headers or []),
        ]:
            conn.putheader(name, value)
        conn.endheaders(data)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def query(**overrides: Any) -> dict[str, Any]:
    return {"service": ["all"], "start_time": START, **overrides}


A = [("x-org-id", ORG_A)]


@pytest.mark.parametrize("limit", [0, -1, -1000, 10001, 1_000_000, "50", 2.5, None, True])
def test_invalid_limit_falls_back_to_1000_without_an_error(sim, limit: Any) -> None:
    status, headers, page = post(sim, query(limit=limit), A)
    assert status == 200 and headers["X-Limit"] == "1000" and len(page) == 40


@pytest.mark.parametrize(("limit", "applied"), [(1, "1"), (10000, "10000"), (7, "7")])
def test_valid_limit_is_applied(sim, limit: int, applied: str) -> None:
    status, headers, page = post(sim, query(limit=limit), A)
    assert status == 200 and headers["X-Limit"] == applied
    assert len(page) == min(limit, 40) and headers["X-Result-Count"] == str(len(page))


def test_default_limit_is_1000(sim) -> None:
    _, headers, _ = post(sim, query(), A)
    assert headers["X-Limit"] == "1000"


@pytest.mark.parametrize(
    ("sort", "applied"),
    [("ASC", "ASC"), ("asc", "ASC"), ("DESC", "DESC"), ("desc", "DESC"), ("Desc", "DESC"),
     ("UP", "ASC"), ("", "ASC"), (5, "ASC"), (None, "ASC")],
)  # fmt: skip
def test_sort_is_case_insensitive_and_invalid_becomes_asc(sim, sort: Any, applied: str) -> None:
    status, headers, page = post(sim, query(sort=sort), A)
    assert status == 200 and headers["X-Sort"] == applied
    stamps = [parse_ts(e["timestamp"]) for e in page]
    assert stamps == sorted(stamps, reverse=applied == "DESC")


def test_several_x_org_id_headers_mix_those_orgs_in_one_stream(sim) -> None:
    headers = [("x-org-id", ORG_A), ("x-org-id", ORG_C)]
    status, _, page = post(sim, query(limit=10000), headers)
    assert status == 200 and len(page) == 60
    assert {e["organization"] for e in page} == {ORG_A, ORG_C}
    stamps = [parse_ts(e["timestamp"]) for e in page]
    assert stamps == sorted(stamps)
    # paging through the mixed stream yields each event once, in order
    body, seen = query(limit=7), []
    while True:
        status, response_headers, chunk = post(sim, body, headers)
        assert status == 200
        seen.extend(chunk)
        body["search_after"] = json.loads(response_headers["X-Search_after"])
        if len(chunk) < 7:
            break
    assert [e["id"] for e in seen] == [e["id"] for e in page]


def test_search_after_tie_breaker_is_opaque_not_the_event_id(sim) -> None:
    status, headers, page = post(sim, query(limit=5), A)
    assert status == 200
    after = json.loads(headers["X-Search_after"])
    assert isinstance(after, list) and len(after) == 2
    assert after[0] == parse_ts(page[-1]["timestamp"])
    assert isinstance(after[1], str) and after[1]
    assert after[1] not in {e["id"] for e in page}
    # the header is on every page, the last one included
    _, last_headers, last = post(sim, query(limit=10000), A)
    assert len(last) == 40 and json.loads(last_headers["X-Search_after"])[0] == parse_ts(
        last[-1]["timestamp"]
    )


def test_some_timestamps_have_no_milliseconds_and_sort_as_000(sim) -> None:
    _, _, page = post(sim, query(limit=10000), A)
    bare = [e for e in page if len(e["timestamp"]) == 20]
    assert bare and all(e["timestamp"][-4] != "." for e in bare)
    # within one second: 02.999 < 03Z (= 03.000) < 03.001
    with JumpCloudSimulator(api_key=KEY) as one:
        base = generate_events(3, START, START, seed=1)
        for event, ts in zip(base, ["2022-12-18T14:57:03.001Z", "2022-12-18T14:57:03Z",
                                    "2022-12-18T14:57:02.999Z"]):  # fmt: skip
            event["timestamp"] = ts
        one.add_events(base)
        _, _, ordered = post(one, query())
        assert [e["timestamp"][17:] for e in ordered] == ["02.999Z", "03Z", "03.001Z"]
        _, _, after = post(one, query(start_time="2022-12-18T14:57:03.000Z"))
        assert [e["timestamp"][17:] for e in after] == ["03Z", "03.001Z"]


def test_402_for_an_org_without_directory_insights(sim) -> None:
    sim.set_insights(ORG_B, enabled=False)
    try:
        status, _, body = post(sim, query(), [("x-org-id", ORG_B)])
        assert status == 402
        assert body == {"message": "Directory Insights is not enabled for your organization"}
        assert post(sim, query(), A)[0] == 200
        answer = requests.post(sim.url + "/_sim/insights", json={"org": ORG_B, "enabled": True})
        assert answer.status_code == 200 and answer.json() == {"insights_disabled": []}
        assert post(sim, query(), [("x-org-id", ORG_B)])[0] == 200
    finally:
        sim.set_insights(ORG_B, enabled=True)


def test_unknown_service_is_a_400_listing_the_supported_values(sim) -> None:
    status, _, body = post(sim, query(service=["directory", "quantum"]), A)
    assert status == 400 and set(body) == {"message"}
    listed = body["message"].split("supported values: ", 1)[1].split(", ")
    assert sorted(listed) == sorted(ENUM)


@pytest.mark.parametrize("service", ENUM)
def test_every_service_of_todays_enum_is_accepted(sim, service: str) -> None:
    assert post(sim, query(service=[service]), A)[0] == 200


def test_start_time_must_precede_end_time(sim) -> None:
    status, _, body = post(sim, query(end_time=START), A)
    assert status == 400 and body["message"].startswith("Start Time not after End Time")


def test_count_answers_count(sim) -> None:
    status, _, body = post(sim, query(), A, path=EVENTS + "/count")
    assert (status, body) == (200, {"count": 40})
    both = post(sim, query(), [*A, ("x-org-id", ORG_B)], path=EVENTS + "/count")
    assert both[2] == {"count": 70}


def test_provider_activity_under_x_provider_id(sim) -> None:
    status, _, page = post(sim, query(), [("x-provider-id", PROVIDER)])
    assert status == 200 and len(page) == 6
    assert {e["provider"] for e in page} == {PROVIDER}
    _, _, org_page = post(sim, query(limit=10000), A)
    assert not {e["id"] for e in page} & {e["id"] for e in org_page}
    assert post(sim, query(), [("x-provider-id", "f" * 24)])[0] == 403


def test_error_bodies_are_message_objects(sim) -> None:
    conn = requests.post(sim.url + EVENTS, json=query(), timeout=5)
    assert conn.status_code == 401 and set(conn.json()) == {"message"}
    assert set(post(sim, query(), [("x-org-id", "d" * 24)])[2]) == {"message"}


def test_several_events_can_share_one_millisecond(sim) -> None:
    with JumpCloudSimulator(api_key=KEY) as one:
        one.add_events(burst_events(12, "2022-12-18T10:00:00.123Z", seed=2))
        _, headers, first = post(one, query(limit=5))
        body = query(limit=5, search_after=json.loads(headers["X-Search_after"]))
        _, _, second = post(one, body)
        assert len(first) == len(second) == 5
        assert not {e["id"] for e in first} & {e["id"] for e in second}
