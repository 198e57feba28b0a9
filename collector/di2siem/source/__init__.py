"""JumpCloud Directory Insights, the source of every event.

One job per module: ``client`` (the client and its queries: pages, count, probe), ``pages``
(a page's text parsed into events, defects told apart), ``tokens`` (service-account tokens),
``refusals`` (JumpCloud's non-200 answers as errors naming what to check; query scopes).
"""
