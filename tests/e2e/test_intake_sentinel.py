"""The sentinel intake end to end: the collector against the JumpCloud simulator and a
Microsoft Entra token endpoint + Azure Monitor Logs Ingestion API of our own (sandbox
sentinel.py), over real HTTP on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import counts, recent_events
from di2siem.timeutil import format_ms, parse_ms
from di2siem_sandbox import JumpCloudSimulator
from di2siem_sandbox.sentinel import CLIENT_ID, DCR_ID, TENANT, SentinelSimulator
from intake_rigs import IntakeRun

SECRET = "sentinel-app-secret-7Qx~9vL2"


class Sentinel(IntakeRun):
    def __init__(self, tmp: Path, jc: JumpCloudSimulator, az: SentinelSimulator) -> None:
        super().__init__(tmp, jc)
        self.az = az

    def write(self, top: dict[str, Any] | None = None, **siem: Any) -> None:
        siem = {
            "format": "sentinel",
            "endpoint": self.az.url,
            "authority": self.az.url,
            "dcr_immutable_id": DCR_ID,
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "batch_size": 40,
            "batch_delay_milliseconds": 0,
            **siem,
        }
        self.write_siem(siem, **(top or {}))

    def leaks(self) -> tuple[str, ...]:
        return (SECRET, *self.az.tokens)

    def ids(self) -> list[str]:
        return [event["id"] for event in self.az.events()]


@pytest.fixture
def az() -> Iterator[SentinelSimulator]:
    with SentinelSimulator(client_secret=SECRET) as sim:
        yield sim


@pytest.fixture
def sentinel(tmp_path: Path, jcsim: JumpCloudSimulator, az: SentinelSimulator) -> Sentinel:
    return Sentinel(tmp_path, jcsim, az)


def test_every_event_is_one_row_with_its_time_and_columns(sentinel: Sentinel, capsys) -> None:
    events = recent_events(100)
    events[3]["success"] = False
    sentinel.jc.add_events(events)
    sentinel.write()
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    assert counts(err)["shipped"] == 100
    assert sentinel.ids() == [e["id"] for e in events]
    assert sentinel.az.dropped_rows == 0 and sentinel.az.token_requests == 1
    row, source = sentinel.az.rows[0], events[0]
    assert row["TimeGenerated"] == format_ms(parse_ms(source["timestamp"]))
    assert row["EventId"] == source["id"]
    assert row["Service"] == source["service"]
    assert row["EventType"] == source["event_type"]
    assert row["InitiatedBy"] == source["initiated_by"]["email"]
    assert row["ClientIp"] == source["client_ip"]
    assert row["Success"] is source["success"]
    assert sentinel.az.rows[3]["Success"] is False
    assert "timestamp" not in row["Event"] and row["Event"]["jc_timestamp"] == source["timestamp"]
    rc, err = sentinel.run(capsys)
    assert rc == 0 and len(sentinel.az.rows) == 100  # nothing twice


def test_the_token_is_refreshed_before_it_expires(sentinel: Sentinel, capsys) -> None:
    sentinel.az.expires_in = 2  # refreshed 0.4 s before: after 1.6 s
    events = recent_events(60)
    sentinel.jc.add_events(events)
    sentinel.write(batch_size=10, batch_delay_milliseconds=450)
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    assert sentinel.az.token_requests >= 2
    assert sentinel.az.stats["by_status"].get("401", 0) == 0  # never sent an expired one
    assert sentinel.ids() == [e["id"] for e in events]


def test_a_401_renews_the_token_and_sends_the_batch_once_more(sentinel: Sentinel, capsys) -> None:
    sentinel.az.token_lifetime_s = 0.3  # refused long before the announced hour
    events = recent_events(30)
    sentinel.jc.add_events(events)
    sentinel.write(batch_size=10, batch_delay_milliseconds=400)
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    statuses = [status for _, status in sentinel.az.posts]
    assert statuses == [204, 401, 204, 401, 204]
    assert sentinel.az.token_requests == 3
    assert sentinel.ids() == [e["id"] for e in events]  # none lost, none twice
    assert counts(err)["retries"] == 0  # a renewal is not a retry of the batch


def test_a_fresh_token_refused_too_is_final(sentinel: Sentinel, capsys) -> None:
    sentinel.az.token_lifetime_s = 0  # every token is dead on arrival
    sentinel.jc.add_events(recent_events(10))
    sentinel.write()
    rc, err = sentinel.run(capsys)
    assert rc == 1
    assert "SIEM answered 401 to a fresh token" in err and "siem.client_id" in err
    assert [status for _, status in sentinel.az.posts] == [401, 401]
    assert sentinel.az.rows == []


def test_requests_stay_within_1_mb_whatever_max_batch_bytes_says(
    sentinel: Sentinel, capsys
) -> None:
    events = recent_events(150)
    for event in events:
        event["description"] = "x" * 20_000
    sentinel.jc.add_events(events)
    sentinel.write(batch_size=1000, max_batch_bytes=50_000_000)
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    assert sentinel.ids() == [e["id"] for e in events]
    assert 900_000 < sentinel.az.largest_body <= 1_000_000
    assert sentinel.az.stats["by_status"] == {"204": 4, "200": 1}  # 3 MB in 4 requests


def test_a_413_splits_the_batch(sentinel: Sentinel, capsys) -> None:
    sentinel.az.max_body_bytes = sentinel.az.api_body_limit = 30_000
    events = recent_events(40)
    sentinel.jc.add_events(events)
    sentinel.write(batch_size=40)
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    assert sentinel.ids() == [e["id"] for e in events]
    assert sentinel.az.stats["by_status"].get("413", 0) >= 1


def test_a_429_waits_as_long_as_retry_after_says(sentinel: Sentinel, capsys) -> None:
    events = recent_events(20)
    sentinel.jc.add_events(events)
    sentinel.az.throttle(1, retry_after=1)
    sentinel.write(top={"retry_max_delay_seconds": 5})
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    (t429, s429), (t204, s204) = sentinel.az.posts
    assert (s429, s204) == (429, 204) and t204 - t429 >= 1.0
    assert counts(err)["retries"] == 1 and sentinel.ids() == [e["id"] for e in events]


def test_a_403_names_the_role_until_it_propagates(sentinel: Sentinel, capsys) -> None:
    sentinel.az.role_granted = False
    events = recent_events(10)
    sentinel.jc.add_events(events)
    sentinel.write()
    rc, err = sentinel.run(capsys)
    assert rc == 1 and '"Monitoring Metrics Publisher"' in err and "30 minutes" in err
    assert sentinel.az.rows == []
    sentinel.az.grant_role(propagates_after_s=0)
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    assert sentinel.ids() == [e["id"] for e in events]


@pytest.mark.parametrize("empty_array_status", [204, 400])
def test_check_proves_token_dcr_and_role_without_a_row(
    sentinel: Sentinel, capsys, empty_array_status: int
) -> None:
    sentinel.az.empty_array_status = empty_array_status
    sentinel.write()
    rc, out = sentinel.run(capsys, command="check")
    assert rc == 0, out
    assert sentinel.az.rows == [] and sentinel.az.token_requests == 1
    assert [status for _, status in sentinel.az.posts] == [empty_array_status]


def test_check_names_what_is_wrong(sentinel: Sentinel, capsys) -> None:
    sentinel.write(client_secret="not-the-app-secret")
    rc, out = sentinel.run(capsys, command="check")
    assert rc != 0 and "AADSTS7000215" in out and "check siem.client_secret" in out
    assert "not-the-app-secret" not in out
    sentinel.write(dcr_immutable_id="dcr-" + "0" * 32)
    rc, out = sentinel.run(capsys, command="check")
    assert rc != 0 and "SIEM answered 404" in out and "siem.dcr_immutable_id" in out
    sentinel.az.role_granted = False
    sentinel.write()
    rc, out = sentinel.run(capsys, command="check")
    assert rc != 0 and "Monitoring Metrics Publisher" in out
    assert sentinel.az.rows == []


@pytest.mark.parametrize(
    ("siem", "key"),
    [
        ({"dcr_immutable_id": ""}, "siem.dcr_immutable_id"),
        ({"dcr_immutable_id": "my-dcr"}, "siem.dcr_immutable_id"),
        ({"client_id": "app"}, "siem.client_id"),
        ({"url": "https://x.example/in"}, "siem.url"),
        ({"endpoint": "http://dce.example.com"}, "siem.endpoint"),
        ({"client_secret": "short"}, "siem.client_secret"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(
    sentinel: Sentinel, capsys, siem: dict, key: str
) -> None:
    sentinel.write(**siem)
    started = time.monotonic()
    rc, out = sentinel.run(capsys)
    assert rc == 2 and key in out and time.monotonic() - started < 5
    assert sentinel.az.token_requests == 0


def test_a_batch_whose_answer_is_lost_is_sent_again_at_most_twice_more(
    sentinel: Sentinel, capsys
) -> None:
    """The API keeps no ids: a batch it took but whose answer never came is sent again (it
    may be there twice), within the delivery's resend cap; nothing is lost."""
    events = recent_events(30)
    sentinel.jc.add_events(events)
    sentinel.az.stall(1, seconds=1.5)
    sentinel.write(batch_size=10, timeout_seconds=0.5)
    rc, err = sentinel.run(capsys)
    assert rc == 0, err
    ids = sentinel.ids()
    assert sorted(set(ids)) == sorted(e["id"] for e in events)
    assert len(ids) == 40 and ids[:10] == ids[10:20]  # the first batch twice, no more
    rc, err = sentinel.run(capsys)
    assert rc == 0 and len(sentinel.az.rows) == 40


class EchoingIssuer(SentinelSimulator):
    """A hostile token endpoint that quotes the whole request form in its error."""

    def _token(self, request):
        from di2siem_sandbox.sentinel import _aad

        return _aad(401, "invalid_client", 7000215, "got " + request.body.decode())


def test_an_issuer_that_echoes_the_secret_never_gets_it_logged(
    tmp_path: Path, jcsim: JumpCloudSimulator, capsys
) -> None:
    with EchoingIssuer(client_secret=SECRET) as hostile:
        sentinel = Sentinel(tmp_path, jcsim, hostile)
        sentinel.jc.add_events(recent_events(5))
        sentinel.write()
        rc, out = sentinel.run(capsys)  # asserts the secret is nowhere in the output
        assert rc == 1 and "AADSTS7000215" in out and "[redacted]" in out
        rc, out = sentinel.run(capsys, command="check")
        assert rc != 0 and "check siem.client_secret" in out
