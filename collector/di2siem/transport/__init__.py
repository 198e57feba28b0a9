"""HTTP transport shared by both sides (JumpCloud, the SIEM) and the heartbeat.

One job per module: ``session`` (sessions, TLS, proxies, header lines), ``guard`` (cutting an
exchange's sockets at its deadline), ``exchange`` (one guarded send: deadlines, redirects
refused), ``body`` (reading an answer within its size cap), ``retry`` (the retry policy,
Retry-After, which errors are worth retrying).
"""
