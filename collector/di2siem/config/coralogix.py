"""Coralogix regions: a region code, domain, UI host or a team's login URL -> the domain of
its ingress host. It sits with the configuration rather than in intakes/coralogix.py because
``siem.url`` is derived from ``siem.region`` when the file is read, so that ``check --offline``
refuses an unknown region without building an intake."""

from __future__ import annotations

from ..errors import ConfigError, shown

# region code -> Coralogix domain; the UI hosts users often know map to the same domain.
CORALOGIX_REGIONS = {
    "us1": "us1.coralogix.com",
    "us2": "us2.coralogix.com",
    "us3": "us3.coralogix.com",
    "eu1": "eu1.coralogix.com",
    "eu2": "eu2.coralogix.com",
    "ap1": "ap1.coralogix.com",
    "ap2": "ap2.coralogix.com",
    "ap3": "ap3.coralogix.com",
    "gov1": "gov1.coralogixgov.us",
}
CORALOGIX_UI_HOSTS = {
    "app.coralogix.us": "us1.coralogix.com",
    "app.cx498.coralogix.com": "us2.coralogix.com",
    "app.us3.coralogix.com": "us3.coralogix.com",
    "coralogix.com": "eu1.coralogix.com",
    "app.coralogix.com": "eu1.coralogix.com",
    "app.eu2.coralogix.com": "eu2.coralogix.com",
    "app.coralogix.in": "ap1.coralogix.com",
    "coralogix.in": "ap1.coralogix.com",
    "app.coralogixsg.com": "ap2.coralogix.com",
    "coralogixsg.com": "ap2.coralogix.com",
    "app.ap3.coralogix.com": "ap3.coralogix.com",
    "app.gov1.coralogixgov.us": "gov1.coralogixgov.us",
    "coralogix.us": "us1.coralogix.com",
}


def coralogix_domain(region: str, path: str) -> str:
    """Region code, Coralogix domain, UI host or a team's login URL -> Coralogix domain.

    A login URL (``https://acme.app.eu2.coralogix.com/#/dashboards``, ``acme.coralogix.com``)
    loses its scheme, path, query, fragment and port; then the first label (the team name) is
    dropped when what is left is a known host."""
    text = region.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    for sep in "/?#":
        text = text.split(sep, 1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0].rstrip(".")
    if text.startswith("ingress."):
        text = text[len("ingress.") :]
    team_dropped = text.split(".", 1)[1] if text.count(".") >= 2 else ""
    for host in (text, team_dropped):
        if host in CORALOGIX_REGIONS:
            return CORALOGIX_REGIONS[host]
        if host in CORALOGIX_REGIONS.values():
            return host
        if host in CORALOGIX_UI_HOSTS:
            return CORALOGIX_UI_HOSTS[host]
    codes = ", ".join(c.upper() for c in CORALOGIX_REGIONS)
    raise ConfigError(
        path,
        f"unknown Coralogix region {shown(region)}",
        f"use a region code ({codes}), its domain (e.g. eu1.coralogix.com), the UI host or "
        "your team's login URL (e.g. https://acme.app.coralogix.us/)",
    )
