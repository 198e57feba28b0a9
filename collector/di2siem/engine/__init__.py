"""One org's stream (fetch → shape → batch → deliver → checkpoint) and what it is made of:
the typed per-event decisions, the window, batching, the checkpoint, the shared-query router,
and the one seam for speed (overlap.py). Many orgs are the scheduler's business, above."""
