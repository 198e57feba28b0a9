"""``di2siem run --dry-run [--limit N]``: the first N records the next run would ship, exactly
as the intake would receive them (each request body, byte for byte, on stdout; its method,
URL and size on stderr), with nothing shipped and nothing written: no state, no lock file, no
dead letters, no metrics, no heartbeat. The way to check field mapping before pointing at a
real SIEM.

It reads each org's state (read only) to start where the next run would (its cursor, its
recent ids dropping what was shipped) and runs the same stream as a run, with a sink that
prints instead of posting and a checkpoint that records nothing.
"""

from __future__ import annotations

import sys
import time

from ..batching import Batcher, Item
from ..config import Config
from ..engine.classify import dead_letters_of
from ..engine.context import OrgRun, StreamContext
from ..engine.decisions import Defect
from ..engine.overlap import PLAIN
from ..engine.stream import Stream
from ..errors import FatalError, GaveUpError, OrgRefused, PositionAhead, StateError
from ..intakes import intake_for
from ..intakes.base import Intake
from ..log import Logger
from ..shaping import Shaper
from ..source.client import JumpCloudClient
from ..state.deadletter import DeadLetters
from ..state.store import StateStore
from ..timeutil import format_ms
from ..transport.retry import RetryPolicy

DEFAULT_LIMIT = 10


class Enough(Exception):
    """The limit was printed: the stream stops here."""


class PrintingSink:
    """Stands where BatchDelivery stands: prints each batch's body instead of posting it."""

    def __init__(self, intake, log: Logger, limit: int) -> None:
        self.intake = intake
        self.framing = intake.framing
        self.log = log
        self.left = limit
        self.printed = 0
        streamed = type(intake).transport is not Intake.transport  # syslog: its own socket
        self.request = (
            f"SEND {intake.cfg.url}" if streamed else f"{intake.cfg.method} {intake.post_url()}"
        )

    def ship(self, items: list[Item], on_accepted) -> None:
        items = items[: self.left]
        if not items:
            raise Enough()
        body = self.framing.body(items)
        self.log.info(
            "dry run: the intake would receive",
            request=self.request,
            records=len(items),
            bytes=len(body),
        )
        out = sys.stdout.buffer
        out.write(body if body.endswith(b"\n") else body + b"\n")
        out.flush()
        self.printed += len(items)
        self.left -= len(items)
        if self.left <= 0:
            raise Enough()

    def settle(self) -> None:
        pass


class DryStream(Stream):
    """The stream with nothing recorded: no checkpoint, no first-window pin, no dead letter
    kept (only reported)."""

    def run(self, o: OrgRun) -> None:
        start, _ = self.window(o)
        batcher = self.batcher()
        classify = self.classifier(o, start, batcher)
        fetched = self.jc.pages(format_ms(start), o.org, classify, dead_letters_of(o))
        self.flow(fetched, lambda items: None, batcher, solo=o)

    def batcher(self) -> Batcher:
        limits = self.sink.intake.limits()
        count = max(1, min(limits.max_events, self.sink.left))
        return Batcher(count, limits.max_bytes, self.sink.framing)

    def dead_letter(self, o: OrgRun, defect: Defect) -> None:
        self.ctx.log.warning(
            f"JumpCloud sent an element that is no event ({defect.reason}); a run would keep "
            "it in the dead-letter file and go on",
            org=o.org,
        )


def dry_run(cfg: Config, log: Logger, limit: int) -> int:
    """Print up to ``limit`` records; 0 done, 1 when JumpCloud or the state failed."""
    intake = intake_for(cfg.siem)
    sink = PrintingSink(intake, log, limit)
    store = StateStore(cfg.state_dir, cfg.recent_ids_max)  # read only: org() never writes
    ctx = StreamContext(
        cfg, log, store, DeadLetters(cfg.state_dir), time.monotonic, float("inf"), PLAIN
    )
    policy = RetryPolicy(cfg.max_retries, cfg.retry_base_delay_seconds, cfg.retry_max_delay_seconds)
    jc = JumpCloudClient(cfg.jumpcloud, policy, secrets=log)
    stream = DryStream(ctx, jc, sink, Shaper(cfg, intake.envelope))  # type: ignore[arg-type]
    try:
        for org in cfg.org_keys:
            o = OrgRun(org, store.org(org), jc)  # empty when the org has no state (yet)
            try:
                stream.run(o)
            except Enough:
                break
    except (FatalError, GaveUpError, OrgRefused, PositionAhead, StateError) as exc:
        log.error(str(exc))
        return 1
    finally:
        jc.close()
    log.info(
        "dry run finished: nothing shipped, nothing written",
        records=sink.printed,
        limit=limit,
    )
    return 0
