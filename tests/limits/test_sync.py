"""sync_rate > 0: local counting, background push/pull with Redis, bounded overshoot."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kong_ace.limits.limiter import Limit, Limiter, build_limiter
from kong_ace.limits.storage import MemoryStorage
from kong_ace.limits.storage import synced as synced_module
from kong_ace.limits.storage.synced import SyncedStorage

from .conftest import T0, Clock, RedisServer

LIMITS = (Limit(10, 60),)
KEY = "app|pkg:a"


@pytest.fixture
def roots() -> Iterator[list[MemoryStorage]]:
    made: list[MemoryStorage] = []
    yield made
    for root in made:
        root.close()


def node(server: RedisServer, clock: Clock, roots: list[MemoryStorage],
         sync_rate: float = 3600, **settings: Any) -> Limiter:
    """A gateway node: its own process-wide root, sharing the Redis server."""
    root = MemoryStorage()
    roots.append(root)
    return build_limiter({"sync_rate": sync_rate, "redis": server.settings, **settings},
                         clock=clock, storage=root)


def store(limiter: Limiter) -> SyncedStorage:
    assert isinstance(limiter.storage, SyncedStorage)
    return limiter.storage


def admitted(limiter: Limiter, n: int, limits: tuple[Limit, ...] = LIMITS) -> int:
    return sum(limiter.consume(KEY, limits).allowed for _ in range(n))


def redis_total(server: RedisServer, period: int, start: float) -> int:
    return int(server.client().get(f"ace:rl:{KEY}|{period}|{int(start)}") or 0)


def test_requests_never_touch_redis(redis_db: RedisServer, clock: Clock,
                                    roots: list[MemoryStorage]) -> None:
    a = node(redis_db, clock, roots)
    admin = redis_db.client()
    admin.config_resetstat()
    assert admitted(a, 12) == 10
    stats = admin.info("commandstats")
    assert "cmdstat_evalsha" not in stats and "cmdstat_eval" not in stats


def test_nodes_share_counts_once_synced(redis_db: RedisServer, clock: Clock,
                                        roots: list[MemoryStorage]) -> None:
    a, b = node(redis_db, clock, roots), node(redis_db, clock, roots)
    assert admitted(a, 6) == 6
    assert store(a).sync_now() and redis_total(redis_db, 60, T0) == 6
    assert store(b).sync_now()  # pulls the cluster total of the windows it knows
    assert admitted(b, 1) == 1  # b now knows this bucket: the next sync pulls a's hits
    store(b).sync_now()
    assert admitted(b, 10) == 3
    store(b).sync_now()
    store(a).sync_now()
    assert admitted(a, 5) == 0
    assert redis_total(redis_db, 60, T0) == 10  # exact when syncs happen between requests


def test_sliding_window_pulls_the_previous_window_total(
    redis_db: RedisServer, clock: Clock, roots: list[MemoryStorage]
) -> None:
    a = node(redis_db, clock, roots, window_type="sliding")
    b = node(redis_db, clock, roots, window_type="sliding")
    clock.now = T0 + 30
    assert admitted(a, 10) == 10
    assert admitted(b, 1) == 1  # b has not heard of a's hits yet
    store(a).sync_now()
    store(b).sync_now()
    clock.now = T0 + 60 + 30  # the previous minute's 11 hits weigh 5.5 on every node now
    assert admitted(b, 10) == 4


def test_overshoot_is_bounded_by_what_other_nodes_admit_between_syncs(
    redis_db: RedisServer, clock: Clock, roots: list[MemoryStorage]
) -> None:
    a, b = node(redis_db, clock, roots), node(redis_db, clock, roots)
    limits = (Limit(100, 60),)
    per_sync = 5  # requests each node takes between two syncs
    total = 0
    for _ in range(60):
        for _ in range(per_sync):  # alternating requests, like a round-robin balancer
            total += a.consume(KEY, limits).allowed
            total += b.consume(KEY, limits).allowed
        store(a).sync_now()
        store(b).sync_now()
    # Each node can miss at most the other node's hits since their last syncs.
    assert 100 <= total <= 100 + 2 * per_sync
    assert total > 100  # the price of sync_rate > 0: this is why 0 exists
    assert redis_total(redis_db, 60, T0) == total


def test_background_thread_syncs_on_its_own(redis_db: RedisServer, clock: Clock,
                                            roots: list[MemoryStorage]) -> None:
    a = node(redis_db, clock, roots, sync_rate=0.05)
    assert admitted(a, 4) == 4
    thread = store(a)._thread
    assert thread is not None and thread.daemon
    deadline = time.monotonic() + 5
    while redis_total(redis_db, 60, T0) != 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert redis_total(redis_db, 60, T0) == 4


def test_sync_thread_ends_when_idle_and_restarts_on_demand(
    redis_db: RedisServer, clock: Clock, roots: list[MemoryStorage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(synced_module, "_IDLE_SECONDS", 0.1)
    a = node(redis_db, clock, roots, sync_rate=0.02)
    admitted(a, 1)
    first = store(a)._thread
    assert first is not None
    first.join(timeout=5)
    assert not first.is_alive() and store(a)._thread is None
    admitted(a, 1)
    assert store(a)._thread is not None and store(a)._thread is not first


def test_sync_thread_stays_while_deltas_wait_for_redis(
    redis_db: RedisServer, clock: Clock, roots: list[MemoryStorage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(synced_module, "_IDLE_SECONDS", 0.1)
    redis_db.stop()
    a = node(redis_db, clock, roots, sync_rate=0.02)
    assert admitted(a, 3) == 3
    thread = store(a)._thread
    assert thread is not None
    thread.join(timeout=0.5)  # 25 sync attempts, all failing: idle time would be long over
    assert thread.is_alive()
    redis_db.start()
    thread.join(timeout=5)  # pushes, then ends as idle
    assert not thread.is_alive()
    assert redis_total(redis_db, 60, T0) == 3


def test_redis_outage_keeps_local_counting_and_pushes_later(
    redis_db: RedisServer, clock: Clock, roots: list[MemoryStorage],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = node(redis_db, clock, roots)
    assert admitted(a, 3) == 3
    redis_db.stop()
    with caplog.at_level(logging.ERROR, logger="kong_ace.limits.limiter"):
        assert store(a).sync_now() is False
        assert store(a).sync_now() is False
    assert caplog.text.count("sync to Redis failed") == 1  # once per outage
    assert admitted(a, 10) == 7  # the limit still holds on this node
    redis_db.start()
    assert store(a).sync_now() is True
    assert redis_total(redis_db, 60, T0) == 10


def test_reload_keeps_the_synced_counters(redis_db: RedisServer, clock: Clock) -> None:
    root = MemoryStorage()
    try:
        settings = {"sync_rate": 3600, "redis": redis_db.settings, "window_type": "fixed"}
        before = build_limiter(settings, clock=clock, storage=root)
        assert admitted(before, 4) == 4
        after = build_limiter(dict(settings, sync_rate=1800), clock=clock, storage=root)
        assert after.storage is before.storage and store(after).sync_rate == 1800
        assert admitted(after, 10) == 6
    finally:
        root.close()


def test_hits_during_syncs_are_counted_once(redis_db: RedisServer, clock: Clock,
                                            roots: list[MemoryStorage]) -> None:
    a = node(redis_db, clock, roots)
    limits = (Limit(100_000, 60),)
    stop = threading.Event()
    hits = [0]

    def hammer() -> None:
        while not stop.is_set():
            hits[0] += a.consume(KEY, limits).allowed

    def syncer() -> None:  # syncs racing each other and the hits
        for _ in range(20):
            store(a).sync_now()

    workers = [threading.Thread(target=f) for f in (hammer, syncer, syncer)]
    for w in workers:
        w.start()
    for w in workers[1:]:
        w.join()
    stop.set()
    workers[0].join()
    store(a).sync_now()
    assert redis_total(redis_db, 60, T0) == hits[0] > 0


def test_a_sync_larger_than_one_batch(redis_db: RedisServer, clock: Clock,
                                      roots: list[MemoryStorage]) -> None:
    a, b = node(redis_db, clock, roots), node(redis_db, clock, roots)
    buckets = [f"app{i}|pkg:a" for i in range(700)]  # 1400 counters: three batches
    for bucket in buckets:
        a.consume(bucket, LIMITS)
        b.consume(bucket, LIMITS)
    store(a).sync_now()
    store(b).sync_now()
    assert all(b.consume(bucket, LIMITS).headers["RateLimit-Remaining"] == "7"
               for bucket in buckets)
