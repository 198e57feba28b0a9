"""The run's request-rate cap (throttle.RateLimiter): a token bucket of BURST requests refilled
at ``rate`` a second. A run's first requests go at once; the sustained rate is the cap; a 429
pauses everyone and empties the bucket. On a clock of our own: ``acquire(deadline=now)``
either starts the request now or raises WaitPastBudget (its turn lies later), so each test
reads the earliest start of every request without sleeping. One test on the real clock."""

from __future__ import annotations

import threading
import time

import pytest

from di2siem.errors import WaitPastBudget
from di2siem.throttle import BURST, RateLimiter

RATE = 5.0  # jumpcloud.max_requests_per_second (the default)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def starts_now(limiter: RateLimiter, clock: Clock) -> bool:
    try:
        limiter.acquire(deadline=clock.now)
    except WaitPastBudget:
        return False
    return True


def greedy(limiter: RateLimiter, clock: Clock, seconds: float, step: float = 0.001) -> list:
    """A client that sends whenever the cap lets it, for ``seconds``: the start times."""
    times = []
    end = clock.now + seconds
    while clock.now < end:
        if starts_now(limiter, clock):
            times.append(clock.now)
        else:
            clock.now += step
    return times


def most_in_any_window(times: list[float], width: float) -> int:
    return max(sum(1 for t in times if s <= t < s + width) for s in times)


def test_a_runs_first_requests_are_not_spaced() -> None:
    clock = Clock()
    limiter = RateLimiter(RATE, clock=clock)
    assert BURST == 2  # an empty poll: the clock probe and its one query
    for _ in range(BURST):
        assert starts_now(limiter, clock)  # at once, no 1/rate between them
    assert not starts_now(limiter, clock)  # the bucket is empty: the next one waits
    clock.now = 1000.0 + 1 / RATE - 1e-6
    assert not starts_now(limiter, clock)
    clock.now = 1000.0 + 1 / RATE + 1e-9
    assert starts_now(limiter, clock)
    assert limiter.requests == BURST + 1


def test_the_sustained_rate_stays_at_the_cap() -> None:
    clock = Clock()
    limiter = RateLimiter(RATE, clock=clock)
    times = greedy(limiter, clock, 10.0)
    assert len(times) == pytest.approx(RATE * 10 + BURST, abs=1)
    assert most_in_any_window(times, 1.0) <= RATE + BURST
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap == pytest.approx(1 / RATE, abs=0.002) for gap in gaps[BURST:])
    # an idle spell refills the bucket, never past BURST
    clock.now += 60
    again = greedy(limiter, clock, 3.0)
    assert again[BURST - 1] == again[0]
    assert again[BURST] - again[0] == pytest.approx(1 / RATE, abs=0.002)


def test_the_sustained_rate_on_the_real_clock_from_several_threads() -> None:
    rate, each, threads = 10.0, 8, 3  # 24 requests: about 2.2 s
    limiter = RateLimiter(rate)
    times: list[float] = []
    lock = threading.Lock()

    def send() -> None:
        for _ in range(each):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    times.sort()
    assert len(times) == each * threads
    # never faster than the cap (a loaded machine only makes it slower)
    assert times[-1] - times[0] >= (len(times) - BURST) / rate - 0.01
    assert most_in_any_window(times, 1.0) <= rate + BURST
    assert times[BURST - 1] - times[0] < 0.1  # the burst went at once


def test_a_429_pauses_everyone_for_its_retry_after_and_empties_the_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(RATE, clock=clock)
    assert starts_now(limiter, clock)
    assert limiter.refused(1.5) == 1.5
    assert limiter.pauses == 1
    clock.now = 1001.5 - 1e-6
    assert not starts_now(limiter, clock)  # the bucket had a token, the pause holds it
    clock.now = 1001.5 + 1e-9
    after = greedy(limiter, clock, 2.0)
    assert after[0] == pytest.approx(1001.5, abs=1e-6)  # at the pause's end
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert min(gaps) == pytest.approx(1 / RATE, abs=0.002)  # no burst after a 429


def test_a_429_without_retry_after_backs_off_doubling_until_an_answer() -> None:
    clock = Clock()
    limiter = RateLimiter(RATE, base_backoff=1.0, max_backoff=3.0, clock=clock)
    assert [limiter.refused(None) for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    limiter.answered()
    assert limiter.refused(None) == 1.0
    assert limiter.refused(120.0) == 3.0  # a Retry-After beyond the cap: the cap


def test_a_turn_past_the_deadline_is_refused_and_gives_its_place_back() -> None:
    clock = Clock()
    limiter = RateLimiter(RATE, clock=clock)
    for _ in range(BURST):
        limiter.acquire(deadline=clock.now)
    with pytest.raises(WaitPastBudget, match="max_requests_per_second"):
        limiter.acquire(deadline=clock.now + 0.1)
    clock.now = 1000.0 + 1 / RATE + 1e-9
    assert starts_now(limiter, clock)  # the refused one left no ticket in the queue
