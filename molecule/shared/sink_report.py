#!/usr/bin/env python3
"""Runs ON the target (ansible.builtin.script): one JSON report of the sink's out file,
whichever SIEM simulator wrote it (di2siem-sandbox --sink-out). Also imported by the testinfra
suites (tests/conftest.py) for event_of.

expected = events the JumpCloud simulator holds; lines/unique/duplicates of the sink;
names = count per application name (coralogix), reqHost (json_lines) or source (splunk_hec).
With --ids: [[id, organization], ...], one per line of the sink, in order.
"""

import json
import sys
import urllib.request
from collections import Counter

SINK_OUT = "/var/lib/di2siem-sandbox/sink.jsonl"


def event_of(line):
    """The JumpCloud event in one line of the sink's out file."""
    if "endpoint" in line and "record" in line:  # Coralogix sink: {"endpoint", "record"}
        record = line["record"]
        if line["endpoint"] == "datastream":
            return record
        text = record.get("text")
        return json.loads(text) if isinstance(text, str) else text
    if "sourcetype" in line and "event" in line:  # Splunk HEC envelope
        return line["event"]
    if "TimeGenerated" in line:  # Sentinel row: the whole event in its dynamic column
        return line["Event"]
    if "timeUnixNano" in line:  # OTLP logRecord: the body is the event's JSON
        return json.loads(line["body"]["stringValue"])
    if "raw" in line:  # syslog: RFC 5424 header, no structured data, then MSG (the JSON)
        raw = line["raw"]
        return json.loads(raw[raw.index("{") :])
    return line  # Elasticsearch document: the event with @timestamp


def name_of(line):
    """What the scenarios rename in a reconfigure: applicationName, reqHost or HEC's source."""
    record = line.get("record", line)
    return record.get("applicationName") or record.get("reqHost") or record.get("source")


def read_lines(path=SINK_OUT):
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(raw) for raw in handle if raw.strip()]
    except FileNotFoundError:
        return []


def main():
    lines = read_lines()
    if "--ids" in sys.argv[1:]:
        events = (event_of(line) for line in lines)
        print(json.dumps([[e.get("id"), e.get("organization")] for e in events]))
        return
    with urllib.request.urlopen("http://127.0.0.1:8400/_sim/stats", timeout=10) as resp:
        stored = json.load(resp).get("events_stored", {})
    expected = sum(stored.values()) if isinstance(stored, dict) else int(stored)
    ids = Counter(event_of(line).get("id") for line in lines)
    names = Counter(name_of(line) for line in lines)
    print(
        json.dumps(
            {
                "expected": expected,
                "lines": len(lines),
                "unique": len(ids),
                "duplicates": sorted(i for i, n in ids.items() if n > 1)[:20],
                "names": dict(names),
            }
        )
    )


if __name__ == "__main__":
    main()
