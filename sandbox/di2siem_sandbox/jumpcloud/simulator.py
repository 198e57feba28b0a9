"""The JumpCloud DI simulator assembled: its settings, lifecycle, counters and control API
(POST /_sim/events, /_sim/insights) on top of the API answers (api.py, auth.py) and the event
stores (feed.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..events import DAY_MS, DEFAULT_ORG_ID, now_ms, to_epoch_ms
from ..plumbing.base import BaseSimulator
from ..plumbing.wire import Request, Response
from .api import Api
from .auth import DEFAULT_API_KEY
from .feed import Feed
from .store import OrgStore


class JumpCloudSimulator(Api, Feed, BaseSimulator):
    """The DI API on `url` + /insights/directory/v1. Start with `.start()` or `with`."""

    name = "jumpcloud"
    api_body_limit = 1024 * 1024

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        org_ids: Sequence[str] | None = None,
        non_admin_keys: Sequence[str] = (),
        rate: float = 0.0,
        late_fraction: float = 0.0,
        late_delay_s: float = 120.0,
        seed: int = 0,
        retention_days: float | None = None,
        service_accounts: Mapping[str, str] | None = None,
        token_ttl_s: float = 3600.0,
        token_reported_ttl_s: float | None = None,
        provider_id: str | None = None,
        insights_disabled: Sequence[str] = (),
        latency_s: float = 0.0,
    ) -> None:
        """`service_accounts`: client id -> client secret for /oauth2/token; tokens live
        `token_ttl_s` seconds and announce `token_reported_ttl_s` (default: the real TTL) as
        expires_in, so a test can make a token expire before the client expects it.
        `provider_id`: the MSP provider whose portal events `x-provider-id` reads (store them
        with `org=sim.provider_store`). `insights_disabled`: orgs answered with 402.
        `latency_s`: every API answer (not /_sim/) waits this long first, like a real API's
        round trip (requests are served concurrently, so waits overlap)."""
        super().__init__(host, port)
        self.provider_id = provider_id
        self.insights_disabled: set[str] = set(insights_disabled)
        self.service_accounts = dict(service_accounts or {})
        self.token_ttl_s = token_ttl_s
        self.token_reported_ttl_s = token_reported_ttl_s
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.issued_tokens: list[str] = []  # every token handed out (tests look for leaks)
        self.api_key = api_key
        self.non_admin_keys = frozenset(non_admin_keys)
        self.org_ids: list[str] = list(org_ids) if org_ids else [DEFAULT_ORG_ID]
        self.rate = rate
        self.late_fraction = late_fraction
        self.late_delay_s = late_delay_s
        self.seed = seed
        self.retention_days = retention_days
        self.latency_s = latency_s
        # (monotonic arrival time, path, x-org-id values) of every API request, faults
        # included (tests measure request rates and pauses)
        self.arrivals: list[tuple[float, str, tuple[str, ...]]] = []
        self._lock = threading.Lock()
        self._stores: dict[str, OrgStore] = {key: OrgStore() for key in self._store_keys()}
        self._live_stop = threading.Event()
        self._live_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> JumpCloudSimulator:
        super().start()
        if self.rate > 0:
            self.start_live(self.rate, self.late_fraction, self.late_delay_s)
        return self

    def stop(self) -> None:
        self.stop_live()
        super().stop()

    def __enter__(self) -> JumpCloudSimulator:
        return self.start()

    def reset(self) -> None:
        super().reset()
        self.clear_events()
        with self._lock:
            self.arrivals.clear()

    @property
    def stats(self) -> dict[str, Any]:
        data = super().stats
        with self._lock:
            for store in self._stores.values():
                store.promote(time.monotonic())
            data["events_stored"] = {org: len(s.keys) for org, s in self._stores.items()}
            data["events_pending"] = {org: len(s.pending) for org, s in self._stores.items()}
        data.setdefault("pages_served", 0)
        data.setdefault("events_served", 0)
        return data

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The last 10000 API requests: path, org, status and the parsed body."""
        return list(self.request_log)

    # -- HTTP ------------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        if not request.path.startswith("/_sim/"):
            with self._lock:
                self.arrivals.append(
                    (time.monotonic(), request.path, tuple(request.header_all("x-org-id")))
                )
            if self.latency_s > 0:
                time.sleep(self.latency_s)
        return super().dispatch(request)

    # -- control ---------------------------------------------------------------------------
    def extra_control(self, request: Request) -> Response:
        if (request.method, request.path) == ("POST", "/_sim/insights"):
            return self._control_insights(request)
        if (request.method, request.path) != ("POST", "/_sim/events"):
            return super().extra_control(request)
        try:
            added = self._control_events(request.json())
        except (ValueError, TypeError) as exc:
            return Response.message(400, str(exc))
        return Response.json(200, {"added": added, "stored": self.stats["events_stored"]})

    def set_insights(self, org: str, enabled: bool) -> None:
        """Switch Directory Insights off (402 for every request naming the org) or back on."""
        if org not in self._stores:
            raise ValueError(f"unknown org {org!r}; configured: {self._store_keys()}")
        if enabled:
            self.insights_disabled.discard(org)
        else:
            self.insights_disabled.add(org)

    def _control_insights(self, request: Request) -> Response:
        try:
            data = request.json()
            if not isinstance(data, dict) or not isinstance(data.get("enabled"), bool):
                raise ValueError('expected {"org": "<org id>", "enabled": true|false}')
            self.set_insights(str(data.get("org")), data["enabled"])
        except ValueError as exc:
            return Response.message(400, str(exc))
        return Response.json(200, {"insights_disabled": sorted(self.insights_disabled)})

    def _control_events(self, data: Any) -> int:
        if isinstance(data, list):
            return self.add_events(data)
        if not isinstance(data, dict):
            raise ValueError("POST /_sim/events takes an array of events or an object")
        org = data.get("org")
        visible_after_s = float(data.get("visible_after_s") or 0)
        if "events" in data:
            return self.add_events(data["events"], org, visible_after_s)
        if "burst" in data:
            return len(
                self.add_burst(
                    int(data["burst"]), data.get("at"), org, data.get("seed"), visible_after_s
                )
            )
        if "generate" in data:
            end = data.get("end")
            start = data.get("start")
            if start is None and data.get("days") is not None:
                end_ms = to_epoch_ms(end) if end is not None else now_ms()
                start, end = end_ms - int(float(data["days"]) * DAY_MS), end_ms
            return self.generate(
                int(data["generate"]),
                start,
                end,
                seed=data.get("seed"),
                org=org,
                services=data.get("services"),
                visible_after_s=visible_after_s,
                deep_every=int(data.get("deep_every") or 0),
            )
        raise ValueError('expected "events", "generate" or "burst" in the object')
