"""Events really arrive: the scheduled job (cron or timer), not a test, ships the simulator's
whole backlog to the sink, in the configured shape, each event once."""

import json
import re

from conftest import event_of, run_log, wait_for_all_events


def test_backlog_arrives_through_the_scheduled_job(host):
    expected, records = wait_for_all_events(host)
    ids = [event_of(r).get("id") for r in records]
    assert None not in ids
    assert len(ids) == len(set(ids)) == expected, "duplicates in the sink"
    # Shipped by the schedule: its run summaries account for every record.
    summaries = re.findall(r"run summary .*?shipped=(\d+)", run_log(host))
    assert summaries, "no 'di2siem run summary' line from the scheduled job"
    assert sum(int(n) for n in summaries) == len(records)


def test_event_shape(host, siem_format, hostvars):
    _, records = wait_for_all_events(host)
    if siem_format == "coralogix":
        for line in records:
            assert line["endpoint"] == "singles"
            r = line["record"]
            assert r["applicationName"] == hostvars["di2siem_application_name"]
            assert r["subsystemName"] == hostvars["di2siem_subsystem_name"]
            assert "text" in r
            event = event_of(line)
            assert event["id"] and "event_type" in event
    else:
        fields = hostvars.get("di2siem_custom_log_fields", {})
        for line in records:
            assert line["endpoint"] == "datastream"
            r = line["record"]
            assert "jc_timestamp" in r, json.dumps(r)[:300]
            assert "timestamp" not in r
            for key, value in fields.items():
                assert r[key] == value
            assert r["id"] and "event_type" in r
