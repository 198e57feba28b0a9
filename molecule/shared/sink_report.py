#!/usr/bin/env python3
"""Runs ON the target (ansible.builtin.script): one JSON report of the sink's out file.

expected = events the JumpCloud simulator holds; lines/unique/duplicates of the sink;
names = count per application name (coralogix) or reqHost (json_lines).
"""

import json
import urllib.request
from collections import Counter

SINK_OUT = "/var/lib/di2siem-sandbox/sink.jsonl"


def event_of(line):
    record = line["record"]
    if line.get("endpoint") == "datastream":
        return record
    text = record.get("text")
    return json.loads(text) if isinstance(text, str) else text


def main():
    with urllib.request.urlopen("http://127.0.0.1:8400/_sim/stats", timeout=10) as resp:
        stored = json.load(resp).get("events_stored", {})
    expected = sum(stored.values()) if isinstance(stored, dict) else int(stored)
    lines = []
    try:
        with open(SINK_OUT, encoding="utf-8") as handle:
            lines = [json.loads(raw) for raw in handle if raw.strip()]
    except FileNotFoundError:
        pass
    ids = Counter(event_of(line).get("id") for line in lines)
    names = Counter(
        line["record"].get("applicationName") or line["record"].get("reqHost") for line in lines
    )
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
