"""Many orgs in one run: the lock, the plan of shared queries (plan.py), lanes and fair
turns (lanes.py, turn.py), one time budget and request-rate cap, each turn's outcome mapped
to its orgs' status and the exit code, and their run record (runrecord.py)."""
