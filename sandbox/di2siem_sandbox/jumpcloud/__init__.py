"""JumpCloud Directory Insights API simulator (a real HTTP server on loopback).

Faithful to shared/reference/jumpcloud-di-api.md: POST /insights/directory/v1/events,
/events/count, /events/distinct with `x-api-key`, `x-org-id` (several in one request mix those
orgs' events), `x-provider-id` (the MSP portal's own events), body validation (an invalid
`limit` or `sort` silently falls back to 1000 / ASC, an unknown service is a 400 listing the
supported values), sorting by (timestamp ms, opaque tie-breaker), `search_after` paging with
an opaque tie-breaker that is not the event id, the X-* headers, and 402 for an org whose
plan lacks Directory Insights. Service accounts: POST /oauth2/token (HTTP Basic client
id:secret, client_credentials) issues Bearer tokens that expire after `token_ttl_s`.
Control API under /_sim/.
"""

from .simulator import JumpCloudSimulator

__all__ = ["JumpCloudSimulator"]
