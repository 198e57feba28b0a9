"""HTTP sessions: TLS always verified against the configured CA bundle (else certifi's),
nothing taken from the environment implicitly but proxies (never for loopback hosts), and a
connection adapter that joins every exchange's guard and writes repeated headers as lines.

``requests`` is imported lazily so ``di2siem --version``, ``check --offline`` and config
errors do not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..config import is_loopback_host
from .body import ACCEPT_ENCODING
from .guard import join_current_guard

USER_AGENT = f"di2siem/{__version__}"


class HeaderLines(str):
    """A header sent as one line per value (``x-org-id: a``, ``x-org-id: b``...), not folded
    into one: ``requests`` keeps headers in a dict, so the values ride along on this str
    (their comma-joined text, which is what requests validates) and the guarded adapter
    writes them as separate lines (see _guarded_adapter)."""

    values: tuple[str, ...]

    def __new__(cls, values: Iterator[str] | list[str] | tuple[str, ...]) -> HeaderLines:
        values = tuple(values)
        if not values or any(not v or "\r" in v or "\n" in v or "," in v for v in values):
            raise ValueError("header line values must be non-empty, without CR, LF or comma")
        line = super().__new__(cls, ", ".join(values))
        line.values = values
        return line


def _no_proxy_needed(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname)


def _proxies_for(url: str) -> dict[str, str]:
    """Loopback never goes through a proxy (the key would travel in clear to it); other
    hosts use HTTP(S)_PROXY / ALL_PROXY / NO_PROXY from the environment, as curl does."""
    if _no_proxy_needed(url):
        return {}
    from requests.utils import get_environ_proxies

    return dict(get_environ_proxies(url))


def _default_ca_bundle() -> str:
    from requests.certs import where

    return where()


def make_session(ca_bundle: str | None, headers: dict[str, str] | None = None):
    """A session that takes nothing from the environment implicitly: no REQUESTS_CA_BUNDLE /
    CURL_CA_BUNDLE (the configured bundle, else certifi's, is always the one verified
    against), no ~/.netrc credentials. Proxies are passed per request (_proxies_for)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle if ca_bundle else _default_ca_bundle()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = ACCEPT_ENCODING
    adapter = _guarded_adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if headers:
        session.headers.update(headers)
    return session


_ADAPTER_CLASS: Any = None


def _guarded_adapter():
    """An HTTPAdapter whose connections join the current exchange's ExchangeGuard."""
    global _ADAPTER_CLASS
    if _ADAPTER_CLASS is None:
        from requests.adapters import HTTPAdapter
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        def _attached(cls):
            class Guarded(cls):
                # connect: a fresh connection (its TCP socket exists before the TLS
                # handshake); request: a kept-alive one taken from the pool
                def connect(self) -> None:
                    join_current_guard(self)
                    super().connect()

                def request(self, *args: Any, **kwargs: Any) -> Any:
                    join_current_guard(self)
                    return super().request(*args, **kwargs)

            Guarded.__name__ = "Guarded" + cls.__name__
            return Guarded

        class GuardedHTTPPool(HTTPConnectionPool):
            ConnectionCls = _attached(HTTPConnection)

        class GuardedHTTPSPool(HTTPSConnectionPool):
            ConnectionCls = _attached(HTTPSConnection)

        pools = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}

        class GuardedAdapter(HTTPAdapter):
            def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                if any(type(v) is HeaderLines for v in request.headers.values()):
                    request.headers = _header_lines(request.headers)
                return super().send(request, *args, **kwargs)

            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = pools

            def proxy_manager_for(self, proxy: str, **kwargs: Any):
                manager = super().proxy_manager_for(proxy, **kwargs)
                if not proxy.lower().startswith("socks"):
                    manager.pool_classes_by_scheme = pools
                return manager

        _ADAPTER_CLASS = GuardedAdapter
    return _ADAPTER_CLASS()


def _header_lines(headers: Any) -> Any:
    """The request's headers with every HeaderLines value as lines of its own: urllib3's
    HTTPHeaderDict, whose items() (which urllib3 2 writes the request from) yields each
    value of a repeated header separately."""
    from urllib3 import HTTPHeaderDict

    lines = HTTPHeaderDict()
    for name, value in headers.items():
        for one in value.values if type(value) is HeaderLines else (value,):
            lines.add(name, one)
    return lines
