"""An Elasticsearch (or OpenSearch) cluster's ``_bulk`` into data streams, on loopback.

Faithful to the Bulk API as shared/reference/intakes.md summarises it: ``POST /_bulk`` or
``POST /<target>/_bulk`` (PUT too), NDJSON (``Content-Type`` application/json or
application/x-ndjson or their vendor types below, else 406), pairs of lines ending with a
newline (else 400). A data stream takes only ``create`` and needs ``@timestamp`` (a date) in
each document; per-``_id`` dedup answers 409 ``version_conflict_engine_exception``. The answer
is 200 even when items fail, ``errors`` true, items in request order. Auth:
``Authorization: ApiKey <base64(id:key)>``, Basic, or ``Bearer <bearer_token>`` (401
``security_exception`` with a ``WWW-Authenticate`` header, as Elasticsearch answers); a body
over ``max_body_bytes`` is 413. ``POST /_security/user/_has_privileges`` answers whether the
caller may ``create_doc`` in the data stream (``can_create``), and ``GET /`` the cluster's
banner.

As a real cluster, every answer carries ``X-Elastic-Product: Elasticsearch`` (the official
clients refuse a 2xx without it), and the vendor media types of the official clients are
taken: ``application/vnd.elasticsearch+json`` or ``+x-ndjson`` with ``compatible-with=N`` on
``Accept``/``Content-Type``, N the cluster's major ``version`` or the one before (else 400
``media_type_header_exception``, the answer a 9.x client gets from an 8.x cluster), echoed in
the answer's ``Content-Type``.

Switches: ``item_answers`` {_id: [status, ...]} makes that item answer 429
``es_rejected_execution_exception`` or 400 ``mapper_parsing_exception`` (one status per
attempt, then normally); ``refuse_ids`` refuses those _ids with 400 for as long as they are
there; ``drop_answers`` N: the next N bulk requests are indexed, then the connection is
closed without an answer (N < 0: every one); ``answer_delay_s``: each bulk request is indexed,
then answered that much later (a kill -9 lands between the two); ``can_create`` False: items
answer 403; ``reject_requests`` N: the next N bulk requests are refused whole with 429
``es_rejected_execution_exception``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from .plumbing.base import BaseSimulator
from .plumbing.wire import Request, Response

DEFAULT_DATA_STREAM = "logs-jumpcloud.directory_insights-default"
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024  # http.max_content_length (unconfirmed default)
PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}
COMPATIBLE = re.compile(r";\s*compatible-with\s*=\s*(\d+)")
BULK_TYPES = (
    "application/json",
    "application/x-ndjson",
    "application/vnd.elasticsearch+json",
    "application/vnd.elasticsearch+x-ndjson",
)
BULK = re.compile(r"^(?:/(?P<target>[^/_][^/]*))?/_bulk$")
PRIVILEGES_PATH = "/_security/user/_has_privileges"
UNAUTHENTICATED = (
    "unable to authenticate with provided credentials and anonymous access is not allowed for "
    "this request"
)


def es_error(status: int, kind: str, reason: str, **extra: Any) -> dict[str, Any]:
    cause = {"type": kind, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def item_error(kind: str, reason: str) -> dict[str, Any]:
    return {"type": kind, "reason": reason}


def _date(value: Any) -> bool:
    if not isinstance(value, str):
        return type(value) is int
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class ElasticsearchSim(BaseSimulator):
    name = "elasticsearch"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        users: dict[str, str] | None = None,
        bearer_token: str | None = None,
        data_streams: tuple[str, ...] = (DEFAULT_DATA_STREAM,),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        version: str = "8.15.0",
    ) -> None:
        super().__init__(host, port)
        self.version = version
        self.api_key = api_key  # the encoded value: base64("<id>:<key>")
        self.users = dict(users or {})
        self.bearer_token = bearer_token
        self.reject_requests = 0
        self.data_streams = set(data_streams)
        self.max_body_bytes = self.api_body_limit = max_body_bytes
        self.item_answers: dict[str, list[int]] = {}
        self.refuse_ids: set[str] = set()
        self.drop_answers = 0
        self.answer_delay_s = 0.0
        self.can_create = True
        self._lock = threading.Lock()
        self.documents: dict[tuple[str, str], dict[str, Any]] = {}  # (stream, _id), in order
        self.attempts: list[str] = []  # every create's _id, in the order it was asked

    def __enter__(self) -> ElasticsearchSim:
        return self.start()  # type: ignore[return-value]

    def docs(self, stream: str = DEFAULT_DATA_STREAM) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for (ds, _), doc in self.documents.items() if ds == stream]

    def ids(self, stream: str = DEFAULT_DATA_STREAM) -> list[str]:
        with self._lock:
            return [key for ds, key in self.documents if ds == stream]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.documents.clear()
            self.attempts.clear()
            self.item_answers.clear()
            self.refuse_ids.clear()
            self.drop_answers = self.reject_requests = 0

    # -- auth ------------------------------------------------------------------------------
    def _principal(self, request: Request) -> str | None:
        scheme, _, value = (request.header("Authorization") or "").partition(" ")
        if scheme == "ApiKey" and self.api_key and value == self.api_key:
            return "api_key:" + base64.b64decode(value + "==").decode(errors="replace")[:8]
        if scheme == "Bearer" and self.bearer_token and value == self.bearer_token:
            return "bearer"
        if scheme == "Basic" and value:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            if self.users.get(user) == password:
                return user
        return None

    @staticmethod
    def _unauthenticated() -> Response:
        body = es_error(401, "security_exception", UNAUTHENTICATED)
        headers = {"WWW-Authenticate": 'Basic realm="security", charset="UTF-8", ApiKey'}
        return Response.json(401, body, headers)

    # -- dispatch --------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        response = super().dispatch(request)
        if not request.path.startswith("/_sim/"):
            response.headers = {**response.headers, **PRODUCT_HEADER}
        return response

    def handle_api(self, request: Request) -> Response:
        compatible, refusal = self._compatibility(request)
        if refusal is not None:
            return refusal
        response = self._route(request)
        if compatible is not None:
            media = f"application/vnd.elasticsearch+json;compatible-with={compatible}"
            response.headers = {**response.headers, "Content-Type": media}
        return response

    def _compatibility(self, request: Request) -> tuple[int | None, Response | None]:
        """The REST API version asked with compatible-with (None: none asked), or the 400 a
        cluster answers (Elasticsearch's RestCompatibleVersionHelper)."""
        asked = {}
        for name in ("Accept", "Content-Type"):
            value = request.header(name) or ""
            match = COMPATIBLE.search(value)
            if match is not None:
                asked[name] = (int(match.group(1)), value)
        if not asked:
            return None, None
        major = int(self.version.split(".")[0])
        reason = None
        for name, (wanted, value) in asked.items():
            if not major - 1 <= wanted <= major:
                reason = (
                    f"{name} version must be either version {major} or {major - 1}, but found "
                    f"{wanted}. {name}={value}"
                )
                break
        versions = {wanted for wanted, _ in asked.values()}
        if reason is None and request.body and (len(asked) != 2 or len(versions) != 1):
            reason = (
                "A compatible version is required on both Content-Type and Accept headers if "
                "either one has requested a compatible version and the compatible versions "
                "must match."
            )
        if reason is None:
            return versions.pop(), None
        header = "Invalid media-type value on headers [Accept, Content-Type]"
        body = es_error(400, "media_type_header_exception", header)
        body["error"]["caused_by"] = {"type": "status_exception", "reason": reason}
        return None, Response.json(400, body)

    def _route(self, request: Request) -> Response:
        user = self._principal(request)
        if user is None:
            return self._unauthenticated()
        if request.path == "/" and request.method in ("GET", "HEAD"):
            banner = {
                "name": "sim",
                "cluster_name": "di2siem-sandbox",
                "version": {"number": self.version, "build_flavor": "default"},
            }
            return Response.json(200, {**banner, "tagline": "You Know, for Search"})
        if request.path == PRIVILEGES_PATH and request.method in ("GET", "POST"):
            return self._has_privileges(request, user)
        match = BULK.match(request.path)
        if match is None:
            reason = f"no handler found for uri [{request.path}] and method [{request.method}]"
            return Response.json(400, {"error": reason, "status": 400})
        if request.method not in ("POST", "PUT"):
            return Response.json(405, {"error": "Incorrect HTTP method for uri", "status": 405})
        if request.oversize is not None:
            return Response.json(
                413,
                es_error(413, "content_too_long_exception", "request entity too large"),
            )
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in BULK_TYPES:
            reason = f"Content-Type header [{content_type}] is not supported"
            return Response.json(406, {"error": reason, "status": 406})
        with self._lock:
            rejected = self.reject_requests > 0
            self.reject_requests -= rejected
        if rejected:
            reason = "rejected execution of coordinating operation [sim]"
            return Response.json(429, es_error(429, "es_rejected_execution_exception", reason))
        return self._bulk(request.body, match.group("target"))

    def _has_privileges(self, request: Request, user: str) -> Response:
        try:
            asked = request.json()
            wanted = asked["index"]
        except (ValueError, KeyError, TypeError):
            return Response.json(400, es_error(400, "parse_exception", "malformed request"))
        index: dict[str, dict[str, bool]] = {}
        for entry in wanted:
            for name in entry.get("names", []):
                index[name] = {p: self.can_create for p in entry.get("privileges", [])}
        has_all = all(all(v.values()) for v in index.values())
        body = {"username": user, "has_all_requested": has_all, "cluster": {}, "index": index}
        return Response.json(200, {**body, "application": {}})

    # -- _bulk -----------------------------------------------------------------------------
    def _bulk(self, body: bytes, target: str | None) -> Response:
        if not body:
            return Response.json(400, es_error(400, "parse_exception", "request body is required"))
        if not body.endswith(b"\n"):
            reason = "The bulk request must be terminated by a newline [\\n]"
            return Response.json(400, es_error(400, "illegal_argument_exception", reason))
        lines = body.split(b"\n")[:-1]
        if len(lines) % 2:
            reason = f"Malformed action/metadata line [{len(lines)}], expected a document"
            return Response.json(400, es_error(400, "illegal_argument_exception", reason))
        items, created = [], []
        try:
            for at in range(0, len(lines), 2):
                action, document = json.loads(lines[at]), json.loads(lines[at + 1])
                items.append(self._one(action, document, target))
                if next(iter(items[-1].values()))["status"] == 201:
                    created.append(document)
        except (ValueError, AttributeError, StopIteration) as exc:
            reason = f"Malformed action/metadata line: {exc}"
            return Response.json(400, es_error(400, "illegal_argument_exception", reason))
        with self._lock:
            self.record_out(created)
        with self._lock:
            drop = self.drop_answers != 0
            if self.drop_answers > 0:
                self.drop_answers -= 1
        if self.answer_delay_s:
            time.sleep(self.answer_delay_s)
        if drop:
            self.stats_counter.incr("answers_dropped")
            return Response.dropped()
        errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
        return Response.json(200, {"took": 1, "errors": errors, "items": items})

    def _one(self, action: dict, document: Any, target: str | None) -> dict[str, Any]:
        op, meta = next(iter(action.items()))
        stream = meta.get("_index") or target
        doc_id = meta.get("_id") or uuid.uuid4().hex[:20]
        result: dict[str, Any] = {"_index": stream, "_id": doc_id}
        with self._lock:
            self.attempts.append(doc_id)
        status, error = self._verdict(op, stream, doc_id, document)
        if error is None:
            with self._lock:
                if (stream, doc_id) in self.documents:
                    status = 409
                    error = item_error(
                        "version_conflict_engine_exception",
                        f"[{doc_id}]: version conflict, document already exists (current "
                        "version [1])",
                    )
                else:  # without keep_records only the _id stays, for the 409s
                    self.documents[(stream, doc_id)] = document if self.keep_records else None
        name = {201: "created", 409: "conflicts", 429: "rejected"}.get(status, "refused")
        self.stats_counter.incr(f"items_{name}")
        result["status"] = status
        if error is not None:
            result["error"] = error
        else:
            result.update({"_version": 1, "result": "created"})
        return {op: result}

    def _verdict(self, op: str, stream: str | None, doc_id: str, document: Any):
        """(status, error) of one item before the dedup; error None: to be created."""
        with self._lock:
            queued = self.item_answers.get(doc_id)
            forced = queued.pop(0) if queued else None
        if forced == 429:
            reason = "rejected execution of coordinating operation [sim]"
            return 429, item_error("es_rejected_execution_exception", reason)
        if forced == 400 or doc_id in self.refuse_ids:
            reason = (
                "failed to parse field [initiated_by] of type [keyword] in document with id "
                f"'{doc_id}'"
            )
            return 400, item_error("mapper_parsing_exception", reason)
        if not stream:
            return 400, item_error("action_request_validation_exception", "index is missing")
        if stream not in self.data_streams:
            return 404, item_error("index_not_found_exception", f"no such index [{stream}]")
        if op != "create":
            reason = "only write ops with an op_type of create are allowed in data streams"
            return 400, item_error("illegal_argument_exception", reason)
        if not self.can_create:
            reason = f"action [indices:data/write/bulk[s]] is unauthorized for [{stream}]"
            return 403, item_error("security_exception", reason)
        if not isinstance(document, dict) or "@timestamp" not in document:
            reason = "data stream timestamp field [@timestamp] is missing"
            return 400, item_error("document_parsing_exception", reason)
        if not _date(document["@timestamp"]):
            reason = (
                f"failed to parse field [@timestamp] of type [date] in document with id '{doc_id}'"
            )
            return 400, item_error("document_parsing_exception", reason)
        return 201, None
