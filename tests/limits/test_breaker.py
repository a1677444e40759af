"""The circuit breaker: fail fast while Redis keeps failing, one probe per interval, recovery."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from kong_ace import Enforcer
from kong_ace.limits.breaker import FAILURES_TO_OPEN, OPEN_SECONDS, CircuitBreaker
from kong_ace.limits.limiter import Limit, StorageUnavailable, build_limiter
from kong_ace.limits.redis_settings import RedisSettings
from kong_ace.limits.storage import MemoryStorage
from kong_ace.limits.storage.redis import CIRCUIT_OPEN, RedisStorage

from ..redis_topologies import Blackhole
from .conftest import T0, Clock, RedisServer
from .test_enforcer_limits import config_with, list_flights

LIMITS = (Limit(100, 3600),)


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def test_opens_after_n_consecutive_failures_and_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock, failures=3, open_seconds=5)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    breaker.success()  # a success in between: the count starts again
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.is_open and not breaker.allow()
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else while it is in flight
    breaker.failure()  # probe failed: open for another interval
    assert not breaker.allow()
    clock.advance(5)
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow() and breaker.allow()


def _storage(settings: dict, clock: Clock, breaker: bool) -> RedisStorage:
    return RedisStorage(settings=RedisSettings.from_config(settings),
                        breaker=CircuitBreaker(clock) if breaker else None)


def _consume(storage: RedisStorage, n: int) -> list[str]:
    errors = []
    for _ in range(n):
        with pytest.raises(StorageUnavailable) as err:
            storage.acquire("app|pkg:a", [(3600, 100, int(T0), 0.0)], T0 + 1)
        errors.append(str(err.value))
    return errors


def test_a_blackholed_redis_holds_only_n_requests_then_one_probe_per_interval(
    blackhole: Blackhole,
) -> None:
    clock = Clock(T0 + 1)
    storage = _storage(blackhole.settings(100), clock, breaker=True)
    errors = _consume(storage, 30)
    # Each request that waited opened a connection (redis-py drops it after its timeout).
    assert blackhole.accepted == FAILURES_TO_OPEN
    assert errors[FAILURES_TO_OPEN:] == [CIRCUIT_OPEN] * (30 - FAILURES_TO_OPEN)
    clock.advance(OPEN_SECONDS)
    _consume(storage, 10)
    assert blackhole.accepted == FAILURES_TO_OPEN + 1  # one probe, then open again


def test_without_the_breaker_every_request_waits(blackhole: Blackhole) -> None:
    storage = _storage(blackhole.settings(50), Clock(T0 + 1), breaker=False)
    _consume(storage, 8)
    assert blackhole.accepted == 8


def test_concurrent_requests_wait_at_most_once_each_before_it_opens(
    blackhole: Blackhole,
) -> None:
    storage = _storage(blackhole.settings(100), Clock(T0 + 1), breaker=True)
    threads, per_thread = 8, 20
    barrier = threading.Barrier(threads)

    def run() -> None:
        barrier.wait()
        for _ in range(per_thread):
            with pytest.raises(StorageUnavailable):
                storage.acquire("app|pkg:a", [(3600, 100, int(T0), 0.0)], T0 + 1)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # 160 requests; those in flight when it opened waited once, no request twice.
    assert blackhole.accepted <= threads + FAILURES_TO_OPEN


@pytest.mark.parametrize("tolerant", [True, False])
def test_enforcer_applies_fault_tolerant_at_once_while_open(
    blackhole: Blackhole, tolerant: bool
) -> None:
    config = config_with(5, sync_rate=0, redis=blackhole.settings(100), fault_tolerant=tolerant)
    enf = Enforcer(config, clock=Clock(T0 + 1), storage=MemoryStorage())
    statuses = {enf.decide(list_flights()).status for _ in range(20)}
    assert statuses == ({None} if tolerant else {500})  # admitted uncounted, or refused
    assert blackhole.accepted == FAILURES_TO_OPEN  # 5 of the 20 waited a timeout


def test_a_paused_redis_opens_it_and_the_probe_resumes_counting(
    redis_db: RedisServer, clock: Clock
) -> None:
    settings = {"sync_rate": 0, "redis": dict(redis_db.settings, timeout=100),
                "window_type": "fixed"}
    limiter = build_limiter(settings, clock=clock, storage=MemoryStorage())
    assert limiter.consume("app|pkg:a", LIMITS).allowed
    assert redis_db.proc is not None
    redis_db.proc.send_signal(signal.SIGSTOP)  # hung: connections accepted, nothing answered
    try:
        errors = []
        for _ in range(FAILURES_TO_OPEN + 3):
            with pytest.raises(StorageUnavailable) as err:
                limiter.consume("app|pkg:a", LIMITS)
            errors.append(str(err.value))
    finally:
        redis_db.proc.send_signal(signal.SIGCONT)
    assert errors[FAILURES_TO_OPEN:] == [CIRCUIT_OPEN] * 3
    with pytest.raises(StorageUnavailable, match="circuit open"):
        limiter.consume("app|pkg:a", LIMITS)  # Redis is back, but not asked before the interval
    clock.advance(OPEN_SECONDS)
    got = limiter.consume("app|pkg:a", LIMITS)  # the probe, and it answers
    # Charged: 1 before, the probe, and those of the 3 timed-out calls that the paused Redis
    # still ran when it woke up (their scripts were in its socket buffers): each at most once.
    assert got.allowed and 95 <= int(got.headers["RateLimit-Remaining"]) <= 98
    after = limiter.consume("app|pkg:a", LIMITS).headers["RateLimit-Remaining"]
    assert int(after) == int(got.headers["RateLimit-Remaining"]) - 1


def test_fast_failures_never_open_it(redis_db: RedisServer, clock: Clock) -> None:
    limiter = build_limiter({"sync_rate": 0, "redis": redis_db.settings}, clock=clock,
                            storage=MemoryStorage())
    redis_db.stop()  # refused at once: nothing to wait for
    for _ in range(FAILURES_TO_OPEN * 4):
        with pytest.raises(StorageUnavailable, match="refused"):
            limiter.consume("app|pkg:a", LIMITS)
    assert not limiter.storage.breaker.is_open
    redis_db.start()
    assert limiter.consume("app|pkg:a", LIMITS).allowed  # counted again at once


def test_one_breaker_per_redis_shared_across_config_reloads(redis_db: RedisServer) -> None:
    root, clock = MemoryStorage(), Clock()
    settings = {"sync_rate": 0, "redis": redis_db.settings}
    a = build_limiter(settings, clock=clock, storage=root)
    b = build_limiter(dict(settings, window_type="fixed"), clock=clock, storage=root)
    other = build_limiter({"sync_rate": 0, "redis": dict(redis_db.settings, database=1)},
                          clock=clock, storage=root)
    assert a.storage.breaker is b.storage.breaker is not None
    assert other.storage.breaker is not a.storage.breaker
    synced = build_limiter(dict(settings, sync_rate=1), clock=clock, storage=root)
    assert synced.storage.redis.breaker is None  # requests never wait on Redis there
    root.close()
