"""What a simulator's handler sees of one exchange: the request, the response it returns."""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


class Request:
    """What a handler needs from one HTTP request."""

    def __init__(self, method: str, raw_path: str, headers: Any, body: bytes) -> None:
        parts = urlsplit(raw_path)
        self.method = method
        self.path = parts.path.rstrip("/") or "/"
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body
        self.oversize: int | None = None  # set when the body was drained, not kept

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self) -> Any:
        """Parse the body; raises ValueError with a readable message."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None


class Response:
    def __init__(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.drop = False  # close the connection without answering (see dropped)

    @classmethod
    def dropped(cls) -> Response:
        """No answer at all: the connection is closed after the request was handled (a peer
        that kept the request and lost its answer)."""
        response = cls(0)
        response.drop = True
        return response

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), headers)

    @classmethod
    def message(cls, status: int, text: str, **extra: Any) -> Response:
        return cls.json(status, {"message": text, **extra})


Handler = Callable[[Request], Response]
