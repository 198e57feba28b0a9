"""What the operator reads and is told, outside the run itself.

One job per module: ``status`` (``di2siem status``: is every org shipping), ``metrics`` (the
Prometheus textfile), ``heartbeat`` (the dead man's switch), ``afterrun`` (what every run
leaves behind: metrics and heartbeat), ``probes`` (one deadline for the commands that ask one
question per org: ``status --online`` and online ``check``).
"""
