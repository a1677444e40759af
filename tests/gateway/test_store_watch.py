"""Store calls are timed and counted from the gateway, around real Redis-backed limiters."""

from __future__ import annotations

import pytest

from kong_ace.gateway.metrics import Stores, WatchedStore, watch
from kong_ace.limits.limiter import Limit, MemoryStorage, StorageUnavailable, build_limiter
from tests.redis_server import RedisServer

T0 = 19_700 * 86_400.0
LIMITS = (Limit(10, 60),)



def test_redis_calls_and_failures_are_counted(redis: RedisServer) -> None:
    stores = Stores(clock=lambda: T0)
    limiter = build_limiter({"sync_rate": 0, "redis": redis.settings}, clock=lambda: T0)
    watch(limiter, stores)
    watch(limiter, stores)  # idempotent: one wrapper
    assert isinstance(limiter.storage, WatchedStore)
    assert not isinstance(limiter.storage.inner, WatchedStore)
    assert limiter.consume("app|pkg:p", LIMITS).allowed
    redis.stop()
    with pytest.raises(StorageUnavailable):
        limiter.consume("app|pkg:p", LIMITS)
    (entry,) = stores.status()
    assert (entry["Store"], entry["Calls"], entry["Errors"], entry["Ops"]) == \
        ("redis", 2, 1, ["acquire"])
    assert entry["LastErrorMessage"] == "ConnectionError" and entry["Healthy"] is False


def test_synced_counters_are_watched_at_their_background_sync(redis: RedisServer) -> None:
    stores = Stores()
    root = MemoryStorage()
    limiter = build_limiter({"sync_rate": 60, "redis": redis.settings}, clock=lambda: T0,
                            storage=root)
    watch(limiter, stores)
    assert limiter.consume("app|pkg:p", LIMITS).allowed  # local: no Redis call
    assert stores.status() == []
    assert limiter.storage.sync_now()
    (entry,) = stores.status()
    assert (entry["Calls"], entry["Errors"], entry["Ops"], entry["Healthy"]) == \
        (1, 0, ["sync"], True)
    root.close()


def test_local_counters_are_left_alone() -> None:
    limiter = build_limiter(None)
    store = limiter.storage
    watch(limiter, Stores())
    assert limiter.storage is store
