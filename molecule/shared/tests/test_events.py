"""Events really arrive: the scheduled job (cron or timer), not a test, ships the simulator's
whole backlog to the sink, in the configured shape, each event once."""

import json
import re
from datetime import datetime

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
    for line in records:
        SHAPES[siem_format](line, hostvars)
        event = event_of(line)
        assert event["id"] and "event_type" in event, json.dumps(line)[:300]


def coralogix_shape(line, hostvars):
    assert line["endpoint"] == "singles"
    r = line["record"]
    assert r["applicationName"] == hostvars["di2siem_application_name"]
    assert r["subsystemName"] == hostvars["di2siem_subsystem_name"]
    assert "text" in r


def datastream_shape(line, hostvars):
    assert line["endpoint"] == "datastream"
    r = line["record"]
    assert "jc_timestamp" in r, json.dumps(r)[:300]
    assert "timestamp" not in r
    for key, value in hostvars.get("di2siem_custom_log_fields", {}).items():
        assert r[key] == value


def splunk_hec_shape(line, hostvars):
    """HEC's envelope: time = the event time in epoch seconds (milliseconds), the sourcetype."""
    wanted = hostvars.get("di2siem_siem_sourcetype", "jumpcloud:directory_insights")
    assert line["sourcetype"] == wanted
    assert isinstance(line["time"], float | int)
    assert abs(line["time"] - epoch_of(line["event"]["jc_timestamp"])) < 0.001


def elasticsearch_shape(line, hostvars):
    """A data stream document: @timestamp = the event time, the event's own fields beside."""
    assert epoch_of(line["@timestamp"]) == epoch_of(line["jc_timestamp"])


def epoch_of(stamp):
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


SHAPES = {
    "coralogix": coralogix_shape,
    "json_lines": datastream_shape,
    "json_array": datastream_shape,
    "splunk_hec": splunk_hec_shape,
    "elasticsearch": elasticsearch_shape,
}
