"""What a run keeps between runs in ``state_dir``, and the files it writes there.

One job per module: ``layout`` (where each org's file lives, size bounds), ``recent``
(the recent ids behind the cursor), ``orgstate`` (one org's state and its file's text),
``reading`` (lock-free reads: meta, legacy state.json, snapshot), ``store`` (the run's store:
load, migrate, save), ``atomicfile`` (atomic replaces), ``lock`` (one instance per
state_dir), ``handoff`` (``state export|import``), ``deadletter`` (elements never shippable).
"""
