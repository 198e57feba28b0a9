"""Shared multi-org queries: several orgs served by one JumpCloud stream (jumpcloud.
shared_query_max_orgs), every event routed by its ``organization`` to its own org's cursor and
id memory.

Real HTTP on loopback throughout: the transport is checked on the wire by a raw socket server,
the grouping against the simulator (which counts the requests) and hostile JumpClouds of our own.
"""

from __future__ import annotations

import json
import socket

from di2siem.http import HeaderLines, RetryPolicy
from di2siem.jumpcloud import JumpCloudClient
from hostile import RawPeer


def read_request(sock: socket.socket) -> bytes:
    """The request head and body as sent (no HTTP parser in between)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_group_query_carries_one_x_org_id_line_per_org(tmp_path) -> None:
    from di2siem.config import load as load_config

    orgs = [f"{n:024x}" for n in range(1, 51)]
    heads: list[bytes] = []

    def behave(sock: socket.socket, peer: RawPeer) -> None:
        heads.append(read_request(sock))
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n[]"
        )

    with RawPeer(behave) as peer:
        path = tmp_path / "config.json"
        config = {
            "jumpcloud": {
                "api_key": "k-12345678",
                "base_url": f"http://127.0.0.1:{peer.port}",
                "org_ids": orgs,
            },
            "siem": {"format": "json_lines", "url": "http://127.0.0.1:1/x"},
            "state_dir": str(tmp_path / "state"),
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        cfg = load_config(str(path))
        client = JumpCloudClient(cfg.jumpcloud, RetryPolicy(max_retries=0))
        try:
            pages = list(client.pages("2026-01-01T00:00:00Z", tuple(orgs)))
        finally:
            client.close()
    assert pages == [("[]", [])]
    assert len(heads) == 1
    lines = heads[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    org_lines = [line for line in lines if line.lower().startswith(b"x-org-id:")]
    assert org_lines == [b"x-org-id: " + org.encode() for org in orgs]
    assert sum(line.lower().startswith(b"x-api-key:") for line in lines) == 1
    assert lines[0].startswith(b"POST /insights/directory/v1/events ")


def test_header_lines_refuse_values_that_would_split_or_fold() -> None:
    import pytest

    for bad in ([], [""], ["a\r\nx-api-key: stolen"], ["a,b"]):
        with pytest.raises(ValueError):
            HeaderLines(bad)
    assert HeaderLines(["a", "b"]).values == ("a", "b")
