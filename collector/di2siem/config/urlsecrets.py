"""What of a secret URL (``heartbeat_url``) is redacted: the URL, and every part of it but its
scheme and host, wherever a message may quote it."""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus, urlsplit

# A part of a URL registered as a secret on its own must be at least this long and look like a
# token (see token_like): redacting "ping", "api", "v1", "up" or "heartbeat" would rewrite
# ordinary log text, and the whole path (registered too) still covers them.
URL_PART_MIN_CHARS = 8


def token_like(part: str) -> bool:
    """A random key rather than a word: 8+ characters with a digit or both letter cases, or
    16+ of anything (a UUID, a 22-character ping key, a 10-hex-digit snitch token...)."""
    if len(part) < URL_PART_MIN_CHARS:
        return False
    mixed = any(c.isupper() for c in part) and any(c.islower() for c in part)
    return len(part) >= 16 or mixed or any(c.isdigit() for c in part)


def url_secrets(url: str) -> list[str]:
    """Every part of the URL but its scheme and host, wherever a message may quote it: the
    URL and its /fail form, its path, query and fragment whole, and the token-like path
    segments and query values on their own (a redirect's Location or a proxy error may
    quote any of them)."""
    parts = urlsplit(url)
    found = [url, url + "/fail", parts.username or "", parts.password or ""]
    path = parts.path
    for whole in (path, path + "/fail", parts.query, parts.fragment):
        if len(whole) >= URL_PART_MIN_CHARS:
            found += [whole, unquote(whole)]
    pieces = path.split("/") + parts.fragment.split("/")
    for pair in parts.query.split("&"):
        name, eq, value = pair.partition("=")
        pieces.append(value if eq else name)  # "?<token>" alone is a value too
    for piece in pieces:
        for form in {piece, unquote(piece), unquote_plus(piece)}:
            if token_like(form):
                found.append(form)
    return [s for s in found if s]
