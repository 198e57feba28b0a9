"""di2siem: ship JumpCloud Directory Insights events to a SIEM, losing nothing."""

__version__ = "0.1.0"
