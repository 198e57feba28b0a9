"""JumpCloud regions: a region code -> the API host and the service accounts' token host,
and which region a configuration names (``region``, else the host of ``base_url``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError, shown
from .checks import check_url

JUMPCLOUD_REGIONS = {
    "us": "https://api.jumpcloud.com",
    "eu": "https://api.eu.jumpcloud.com",
    "in": "https://api.in.jumpcloud.com",
}

# Service accounts: the OAuth token host follows the API region.
JUMPCLOUD_TOKEN_URLS = {
    "us": "https://admin-oauth.id.jumpcloud.com/oauth2/token",
    "eu": "https://admin-oauth.id.eu.jumpcloud.com/oauth2/token",
    "in": "https://admin-oauth.id.in.jumpcloud.com/oauth2/token",
}
JUMPCLOUD_TOKEN_URL = JUMPCLOUD_TOKEN_URLS["us"]

EVENTS_PATHS = ("/insights/directory/v1/events", "/insights/directory/v1")


def jumpcloud_base_url(base_url: str | None, region_raw: str | None, p: str) -> tuple[str, str]:
    """(API base URL, region code). ``base_url`` wins over ``region``; the region (which picks
    the service-account token host) is the explicit ``region``, else the one whose API host
    ``base_url`` names, else us."""
    region = None
    if region_raw:
        region = region_raw.strip().lower()
        if region not in JUMPCLOUD_REGIONS:
            raise ConfigError(
                p + "region",
                f"must be one of us, eu, in (got {shown(region_raw)})",
                f"fix {p}region or set {p}base_url",
            )
    if base_url:
        base_url = check_url(base_url.strip(), p + "base_url").rstrip("/")
        for suffix in EVENTS_PATHS:
            if base_url.endswith(suffix):
                base_url = base_url[: -len(suffix)]
        if region is None:
            host = (urlsplit(base_url).hostname or "").rstrip(".")
            by_host = {urlsplit(url).hostname: code for code, url in JUMPCLOUD_REGIONS.items()}
            region = by_host.get(host, "us")
        return base_url, region
    region = region or "us"
    return JUMPCLOUD_REGIONS[region], region
