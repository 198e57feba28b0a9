#!/usr/bin/env python3
"""A package index that must never be used: a recording TCP listener on 127.0.0.1.

Scenarios with molecule_no_index (trixie) point the controller's pip at it for the whole
converge (PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, no pip config, no cache): every connection is
recorded and closed unanswered, so an index lookup both fails the pip command and leaves a
trace that `stop` reports.

  no_index.py start        listen on a free port in a daemon; print {"port", "dir"} as JSON
  no_index.py stop DIR     end that daemon; print {"contacts": [...]} (each: peer, request)

`start` proves the listener records before it returns: it sends one probe request and waits
for its record, so an empty `contacts` means "listened, and nobody came", never "was not
listening". The daemon ends by itself after --lifetime seconds (a converge that failed
before `stop` leaves nothing running for long).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

PROBE = "GET /no-index-probe HTTP/1.0"
RECORD = "contacts.jsonl"
PID = "pid"


def serve(sock: socket.socket, record: Path, lifetime: float) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    deadline = time.monotonic() + lifetime
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            conn, peer = sock.accept()
        except socket.timeout:
            continue
        with conn:
            conn.settimeout(2.0)
            try:
                head = conn.recv(4096)
            except OSError:
                head = b""
        request = head.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        line = json.dumps({"peer": f"{peer[0]}:{peer[1]}", "request": request}) + "\n"
        with record.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def contacts(record: Path) -> list[dict]:
    if not record.is_file():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line]


def start(lifetime: float) -> int:
    directory = Path(tempfile.mkdtemp(prefix="di2siem-no-index-"))
    record = directory / RECORD
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    if os.fork() == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        (directory / PID).write_text(str(os.getpid()), encoding="utf-8")
        try:
            serve(sock, record, lifetime)
        finally:
            os._exit(0)
    sock.close()
    os.wait()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
        probe.sendall(PROBE.encode() + b"\r\n\r\n")
    for _ in range(100):
        if [c["request"] for c in contacts(record)] == [PROBE]:
            break
        time.sleep(0.05)
    else:
        sys.exit(f"no_index: the listener on port {port} did not record its probe")
    json.dump({"port": port, "dir": str(directory)}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def stop(directory: Path) -> int:
    pid_file = directory / PID
    if pid_file.is_file():
        pid = int(pid_file.read_text(encoding="utf-8"))
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except ProcessLookupError:
            pass
    found = contacts(directory / RECORD)
    if not found or found[0]["request"] != PROBE:
        sys.exit(f"no_index: {directory} holds no record of a live listener")
    shutil.rmtree(directory, ignore_errors=True)
    json.dump({"contacts": found[1:]}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    begin = sub.add_parser("start")
    begin.add_argument("--lifetime", type=float, default=1800.0, help="seconds, then exit")
    end = sub.add_parser("stop")
    end.add_argument("dir", type=Path)
    args = parser.parse_args()
    return start(args.lifetime) if args.command == "start" else stop(args.dir)


if __name__ == "__main__":
    sys.exit(main())
