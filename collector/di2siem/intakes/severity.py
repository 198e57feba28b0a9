"""An event's own severity on Coralogix's 1..6 scale (1 Debug, 2 Verbose, 3 Info, 4 Warning,
5 Error, 6 Critical), which every intake maps onto its own."""

from __future__ import annotations

WARNING = 4
# an alert's own severity (alerts service) -> level
ALERT_LEVELS = {
    "info": 3,
    "informational": 3,
    "low": 3,
    "medium": 4,
    "moderate": 4,
    "high": 5,
    "critical": 6,
}


def auto_severity(event: dict, default: int) -> int:
    """An alert's own severity (Low 3 Info, Medium 4 Warning, High 5 Error, Critical 6
    Critical); a failed action (``success: false``) at least 4 Warning; everything else
    ``default``."""
    level = None
    own = event.get("severity")
    if type(own) is str:
        level = ALERT_LEVELS.get(own.strip().lower())
    if event.get("success") is False and (level is None or level < WARNING):
        level = WARNING
    return default if level is None else level
