"""Microsoft Sentinel through the Azure Monitor Logs Ingestion API: rows for a custom table,
``POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01``, a JSON
array per batch, ``Authorization: Bearer`` a Microsoft Entra token of the app (entra.py),
fetched before the first request, refreshed before it expires and after a 401 (the batch
then goes again once, delivery.py's REAUTH).

A row is ``TimeGenerated`` (the event time, RFC 3339 UTC; when di2siem read it for an event
whose time cannot be read), ``EventId``, ``Service``, ``EventType``, ``Organization``,
``InitiatedBy`` (the initiating user's email, else username, else id), ``ClientIp``,
``Success`` (the columns of the event as received; one it lacks is left out: null in the
table) and ``Event``, the event in di2siem's usual shape as a dynamic column. A request is at
most 1,000,000 bytes whatever siem.max_batch_bytes says (the API's 1 MB limit); 204 is
success, 413 halves the batch, 429 and 5xx are retried honouring Retry-After, 403 says which
role the app lacks."""

from __future__ import annotations

from datetime import datetime, timezone

from ..batching import JSON_ARRAY
from ..config import SiemConfig
from ..shaping import encode
from ..timeutil import now_ms
from ..transport.body import body_excerpt
from ..transport.retry import parse_retry_after
from .base import DELIVERED, SPLIT, Intake, Limits, Outcome, Verdict, refused
from .entra import APP_KEYS, EntraTokens

MAX_REQUEST_BYTES = 1_000_000  # "1 MB per call", read as the smaller of its two meanings
ROLE = "Monitoring Metrics Publisher"
# (column, the event's own field): string columns
TEXT_COLUMNS = (
    ("EventId", "id"),
    ("Service", "service"),
    ("EventType", "event_type"),
    ("Organization", "organization"),
    ("ClientIp", "client_ip"),
)
INITIATOR_KEYS = ("email", "username", "name", "id")


class RowEnvelope:
    """One row of the stream around one shaped event."""

    def __init__(self) -> None:
        self._second = -1
        self._second_text = ""

    def head(self, event: dict, key: str | None = None) -> str:
        """The row's columns from the event as received (before shaping renames fields)."""
        row = ""
        for column, key in TEXT_COLUMNS:
            value = event.get(key)
            if type(value) is str and value:
                row += ',"' + column + '":' + encode(value)
        who = event.get("initiated_by")
        if type(who) is dict:
            for key in INITIATOR_KEYS:
                value = who.get(key)
                if type(value) is str and value:
                    row += ',"InitiatedBy":' + encode(value)
                    break
        success = event.get("success")
        if type(success) is bool:
            row += ',"Success":true' if success else ',"Success":false'
        return row

    def wrap(self, text: str, ts_ms: int | None, head: str | None) -> str:
        when = ts_ms if ts_ms is not None and ts_ms >= 0 else now_ms()
        return (
            '{"TimeGenerated":"' + self._time(when) + '"' + (head or "") + ',"Event":' + text + "}"
        )

    def _time(self, ms: int) -> str:
        second = ms // 1000
        if second != self._second:  # events come in time order: one strftime per second
            moment = datetime.fromtimestamp(second, tz=timezone.utc)
            self._second_text = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{ms % 1000:03d}Z"


class Sentinel(Intake):
    name = "sentinel"
    options = (
        "endpoint",
        "dcr_immutable_id",
        "stream",
        "tenant_id",
        "client_id",
        "client_secret",
        "authority",
        "scope",
    )
    framing = JSON_ARRAY

    def __init__(self, cfg: SiemConfig) -> None:
        super().__init__(cfg)
        self.envelope = RowEnvelope()
        self.tokens = EntraTokens(cfg.options, cfg.timeout_seconds, cfg.ca_bundle)

    def limits(self) -> Limits:
        return Limits(self.cfg.batch_size, min(self.cfg.max_batch_bytes, MAX_REQUEST_BYTES))

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def request_headers(self, deadline: float | None) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.tokens.bearer(deadline)}

    def renew_credentials(self) -> None:
        self.tokens.renew()

    def credential_keys(self) -> str:
        return APP_KEYS

    def probe_body(self) -> bytes:
        return b"[]"

    def probe_accepts(self, status: int) -> bool:
        """204 (or any 2xx) to the empty array, or a 400 (whether the API takes an empty
        array is not documented; it checks the token, the DCR, the stream and the role before
        the body, so a 400 still proves them; 401, 403 and 404 do not pass)."""
        return 200 <= status < 300 or status == 400

    def classify(self, status: int, response) -> Outcome:
        if status == 204:  # the only success of the Logs Ingestion API (as its own client)
            return DELIVERED
        if 200 <= status < 300:
            # a proxy, a portal or another service at siem.endpoint: nothing says the rows
            # reached the table, so they are not counted as delivered
            return refused(
                f"SIEM answered {status}{self._detail(response)} where the Logs Ingestion API "
                "answers 204 and nothing else: not counted as delivered; check siem.endpoint "
                "(the DCR's logs ingestion endpoint or a DCE) and any proxy in between"
            )
        if status == 413:
            return SPLIT
        if status == 401:
            return Outcome(
                Verdict.REAUTH,
                reason=(
                    f"SIEM answered 401 to a fresh token{self._detail(response)}: check "
                    f"{APP_KEYS} and siem.scope (the app must be in the DCR's tenant)"
                ),
            )
        return self.refusal(status, response)

    def refusal(self, status: int, response) -> Outcome:
        detail = self._detail(response)
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return Outcome(Verdict.RETRY, retry_after, f"SIEM answered {status}{detail}")
        if status == 401:
            return refused(f"SIEM answered 401{detail}: check {APP_KEYS} and siem.scope")
        if status == 403:
            return refused(
                f"SIEM answered 403{detail}: grant the app siem.client_id the role "
                f'"{ROLE}" on the data collection rule siem.dcr_immutable_id (az role '
                "assignment create, see docs/intakes/sentinel.md); a new assignment can take "
                "up to 30 minutes to apply"
            )
        if status == 404:
            return refused(
                f"SIEM answered 404{detail}: check siem.endpoint, siem.dcr_immutable_id and "
                "siem.stream (the DCR's streamDeclarations)"
            )
        if status == 400:
            return refused(
                f"SIEM answered 400{detail}: check siem.stream and the DCR's stream columns "
                "(docs/intakes/sentinel.md)"
            )
        return refused(f"SIEM answered {status}{detail}: check siem.endpoint")

    def _detail(self, response) -> str:
        detail = self.tokens.scrub(body_excerpt(response))
        return f" ({detail})" if detail else ""
