"""The one seam for speed: the wrappers that overlap a stream's network waits with its own
work, and whether events are spliced from the API's text. The stream reads the same with or
without them; ``FAST`` is what runs, ``PLAIN`` (no threads, every event serialised) is the
reference the property test holds the fast path to (same bytes for the same pages).

- ``Prefetcher``: JumpCloud pages fetched, parsed and shaped one page ahead, in a thread;
- ``Sender``: batches posted (and recorded) in order by a thread, one waiting at most;
- splicing: shaping.Shaper.fast_bytes, chosen per event by engine/classify.py.
Process-level tuning (allocator, switch interval) is the run command's: perf.py.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Callable, NamedTuple, Protocol

from ..intakes.delivery import BatchDelivery

BATCH = "batch"
SKIP = "skip"
_END = object()


class Delivery(Protocol):
    """Where the stream hands batches (BATCH) and events too large to post (SKIP)."""

    def submit(self, kind: str, payload: Any) -> None: ...

    def finish(self) -> None: ...


class Prefetcher:
    """Runs a page generator in a thread, at most one page ahead of the consumer: the next
    page is fetched while the current one is processed, never two (memory stays flat)."""

    def __init__(self, gen: Iterable) -> None:
        self.gen = gen
        self.queue: queue.Queue = queue.Queue()
        self.slot = threading.Semaphore(1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._work, name="di2siem-fetch", daemon=True)
        self.thread.start()

    def _wait_slot(self) -> bool:
        while not self.stopped.is_set():
            if self.slot.acquire(timeout=0.1):
                return True
        return False

    def _work(self) -> None:
        try:
            it = iter(self.gen)
            while self._wait_slot():
                try:
                    page = next(it)
                except StopIteration:
                    self.queue.put(_END)
                    return
                self.queue.put(page)
                page = None
        except BaseException as exc:  # handed to the consumer
            self.queue.put(exc)

    def __iter__(self) -> Iterator:
        while True:
            value = self.queue.get()
            self.slot.release()  # taken: the producer may fetch the next page
            if value is _END:
                return
            if isinstance(value, BaseException):
                raise value
            yield value
            value = None

    def stop(self) -> None:
        self.stopped.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass


class Pages:
    """The plain path: pages fetched when the stream asks for the next one."""

    def __init__(self, gen: Iterable) -> None:
        self.gen = gen

    def __iter__(self) -> Iterator:
        return iter(self.gen)

    def stop(self) -> None:
        close = getattr(self.gen, "close", None)
        if close is not None:
            close()


class Sender:
    """Posts batches in order in a thread and records each accepted one in the state.

    At most one batch waits while another is in flight; the state is only ever written by
    this thread, after the SIEM accepted a batch."""

    def __init__(
        self,
        sink: BatchDelivery,
        accepted: Callable[[list], None],
        skipped: Callable[[Any], None],
    ) -> None:
        self.sink = sink
        self.accepted = accepted  # records an accepted batch
        self.skipped = skipped  # records an event too large to post
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="di2siem-send", daemon=True)
        self.thread.start()
        self.finished = False

    def _work(self) -> None:
        while True:
            kind, payload = self.queue.get()
            if kind is _END:
                self._settle()
                return
            if self.error is not None:
                continue  # drain without shipping after a failure
            try:
                if kind == SKIP:
                    self.skipped(payload)
                else:
                    self.sink.ship(payload, self.accepted)
            except BaseException as exc:
                self.error = exc

    def _settle(self) -> None:
        """Batches still awaiting the intake's acknowledgement recorded (delivery.settle)."""
        try:
            self.sink.settle()
        except BaseException as exc:
            self.error = self.error or exc

    def submit(self, kind: str, payload: Any) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put((kind, payload), timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until everything handed over is handled; raise the sender's error if any."""
        if not self.finished:
            self.finished = True
            self.queue.put((_END, None))
            self.thread.join()
        if self.error is not None:
            raise self.error


class InlineSender:
    """The plain path: each batch posted (and recorded) when it is handed over."""

    def __init__(
        self,
        sink: BatchDelivery,
        accepted: Callable[[list], None],
        skipped: Callable[[Any], None],
    ) -> None:
        self.sink = sink
        self.accepted = accepted
        self.skipped = skipped

    def submit(self, kind: str, payload: Any) -> None:
        if kind == SKIP:
            self.skipped(payload)
        else:
            self.sink.ship(payload, self.accepted)

    def finish(self) -> None:
        self.sink.settle()


class Speed(NamedTuple):
    """Which wrappers a stream runs with."""

    prefetch: bool
    background_send: bool
    splice: bool

    def pages(self, gen: Iterable) -> Prefetcher | Pages:
        return Prefetcher(gen) if self.prefetch else Pages(gen)

    def sender(
        self, sink: BatchDelivery, accepted: Callable[[list], None], skipped: Callable[[Any], None]
    ) -> Delivery:
        kind = Sender if self.background_send else InlineSender
        return kind(sink, accepted, skipped)


FAST = Speed(prefetch=True, background_send=True, splice=True)
PLAIN = Speed(prefetch=False, background_send=False, splice=False)
