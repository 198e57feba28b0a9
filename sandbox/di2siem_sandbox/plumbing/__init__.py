"""Plumbing shared by both simulators: the HTTP server, requests and responses, faults, stats,
and the base simulator (lifecycle and control API)."""
