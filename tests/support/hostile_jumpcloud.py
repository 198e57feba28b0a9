"""A JumpCloud of our own for hostile tests: event texts served as given (future, untimed,
id-less, repeated, not even JSON), and a clock of its own (skew)."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from email.utils import formatdate
from typing import Any

from di2siem.timeutil import now_ms, parse_ms
from hostile import Exchange, HostilePeer

TIMESTAMP = re.compile(r'"timestamp":"([^"]*)"')
SHARED_ONLY = "(shared queries only)"


class FakeJumpCloud:
    """Serves event texts in the order given (the API's ascending order): honours start_time
    (events whose time it cannot read are always returned, as a lying API might), limit and
    search_after; its clock is the host's plus ``skew_ms``: the Date header says so and a
    start_time after it is refused, as JumpCloud does.

    Texts added with ``add_for(org, ...)`` are served only to queries naming that org in an
    x-org-id line; ``add_for(SHARED_ONLY, ...)`` only to queries naming several orgs (a lie
    told to shared queries alone). ``add`` texts go to every query."""

    def __init__(self, skew_ms: int = 0, page_size: int = 1000) -> None:
        self.skew_ms = skew_ms
        self.page_size = page_size
        self.texts: list[str] = []
        self.owners: list[str | None] = []  # per text: the org it is served to (None: all)
        self.queries: list[dict[str, Any]] = []
        self.scopes: list[tuple[str, ...]] = []  # the x-org-id lines of each query
        self._lock = threading.Lock()
        self.peer = HostilePeer(self._behave)

    def __enter__(self) -> FakeJumpCloud:
        self.peer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peer.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.peer.url

    def now(self) -> int:
        return now_ms() + self.skew_ms

    def add(self, *events: dict[str, Any] | str) -> None:
        with self._lock:
            for event in events:
                text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
                self.texts.append(text)
                self.owners.append(None)

    def add_for(self, org: str, *events: dict[str, Any] | str) -> None:
        with self._lock:
            for event in events:
                text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
                self.texts.append(text)
                self.owners.append(org)

    def _serves(self, owner: str | None, asked: list[str]) -> bool:
        if owner is None:
            return True
        if owner == SHARED_ONLY:
            return len(asked) > 1
        return owner in asked

    def _answer(self, ex: Exchange, status: int, body: bytes, headers: dict[str, str]) -> None:
        # written by hand: send_response would add a second (host clock) Date header
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        ex.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def _behave(self, ex: Exchange) -> None:
        query = ex.request.json()
        with self._lock:
            self.queries.append(query)
            asked = ex.request.header_all("x-org-id")
            self.scopes.append(tuple(asked))
            texts = [t if self._serves(o, asked) else None for t, o in zip(self.texts, self.owners)]
        now = self.now()
        date = {"Date": formatdate(now / 1000, usegmt=True), "Content-Type": "application/json"}
        start = parse_ms(query["start_time"])
        if start > now:
            body = json.dumps({"message": "start_time is in the future"}).encode()
            return self._answer(ex, 400, body, date)
        limit = min(int(query.get("limit", 1000)), self.page_size)
        after = query.get("search_after", [-1])[0]
        selected = []
        for index, text in enumerate(texts):
            if index <= after or text is None:
                continue
            found = TIMESTAMP.search(text)  # not json.loads: texts may be hostile
            try:
                if found and parse_ms(found.group(1)) < start:
                    continue
            except ValueError:
                pass  # unreadable: returned anyway
            selected.append((index, text))
            if len(selected) == limit:
                break
        # surrogateescape: a text may carry invalid UTF-8 bytes (U+DC80..U+DCFF) as bytes
        body = ("[" + ",".join(t for _, t in selected) + "]").encode("utf-8", "surrogateescape")
        last = selected[-1][0] if selected else after
        headers = {**date, "X-Limit": str(limit), "X-Search_after": json.dumps([last])}
        self._answer(ex, 200, body, headers)


SHAPING_KEYS = {"timestamp", "jc_timestamp", "reqHost", "customField", "severity"}


def keys(events: list[dict[str, Any]]) -> Counter:
    """Events by identity: id, else their content without what shaping adds or moves (so
    a source event and the shipped one give the same key)."""
    return Counter(
        e.get("id")
        or json.dumps({k: v for k, v in e.items() if k not in SHAPING_KEYS}, sort_keys=True)
        for e in events
    )
