#!/usr/bin/env python3
"""Runs on the CONTROLLER (ansible_playbook_python, which has prometheus_client): reads a
Prometheus textfile on stdin, parses it with Prometheus's own client parser (a file it cannot
parse fails here) and prints one JSON object: {"types": {family: type}, "samples": {name:
{org: value}}} (retries_total also by side: "org/side")."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    types, samples = {}, {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        types[family.name] = family.type
        for sample in family.samples:
            key = "/".join(v for k, v in sorted(sample.labels.items()) if k != "reason")
            samples.setdefault(sample.name, {})[key] = sample.value
    print(json.dumps({"types": types, "samples": samples}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
