"""Redis store specifics: one round trip, script reload, shared pools, keys and config errors."""

from __future__ import annotations

from typing import Any

import pytest

from kong_ace import ConfigError
from kong_ace.limits.limiter import Limit, StorageUnavailable, build_limiter
from kong_ace.limits.storage.redis import RedisSettings, RedisStorage, client_for

from .conftest import T0, Clock, RedisServer


def redis_limiter(server: RedisServer, clock: Clock, **settings: Any) -> Any:
    return build_limiter(
        {"sync_rate": 0, "redis": server.settings, **settings}, clock=clock, storage=None
    )


def test_one_round_trip_per_request(redis_db: RedisServer, clock: Clock) -> None:
    limiter = redis_limiter(redis_db, clock)
    limits = (Limit(5, 1), Limit(100, 60), Limit(1000, 3600))
    limiter.consume("warm|up", limits)  # first use may load the script
    admin = redis_db.client()
    admin.config_resetstat()
    for _ in range(7):
        limiter.consume("app|pkg:a", limits)
    stats = {k: v["calls"] for k, v in admin.info("commandstats").items()}
    stats.pop("cmdstat_info", None)
    stats.pop("cmdstat_config|resetstat", None)
    # 7 EVALSHA, each doing its GETs, INCRs and EXPIREs inside Redis, and nothing else.
    assert stats.pop("cmdstat_evalsha") == 7
    assert set(stats) <= {"cmdstat_get", "cmdstat_incr", "cmdstat_expire"}


def test_script_is_loaded_again_after_a_flush(redis_db: RedisServer, clock: Clock) -> None:
    limiter = redis_limiter(redis_db, clock)
    assert limiter.consume("k", (Limit(3, 60),)).allowed
    redis_db.client().script_flush()  # as after a Redis restart or failover
    assert limiter.consume("k", (Limit(3, 60),)).headers["RateLimit-Remaining"] == "1"


def test_counter_keys_are_bucket_period_and_window_start_with_a_ttl(
    redis_db: RedisServer, clock: Clock
) -> None:
    clock.now = T0 + 75
    redis_limiter(redis_db, clock).consume("web|pkg:basic", (Limit(5, 60),))
    key = f"ace:rl:web|pkg:basic|60|{int(T0) + 60}"
    admin = redis_db.client()
    assert admin.keys("*") == [key.encode()]
    assert admin.get(key) == b"1"
    # Lives through this window and the next (where sliding windows read it): 60 - 15 + 60.
    assert 100 <= admin.ttl(key) <= 106


def test_one_pool_per_distinct_settings(redis_db: RedisServer, clock: Clock) -> None:
    a = redis_limiter(redis_db, clock)
    b = redis_limiter(redis_db, clock, window_type="fixed")
    other = dict(redis_db.settings, database=1)
    c = build_limiter({"sync_rate": 0, "redis": other}, clock=clock, storage=None)
    assert a.storage.client is b.storage.client
    assert c.storage.client is not a.storage.client
    assert c.storage.client.connection_pool.connection_kwargs["db"] == 1


def test_unreachable_redis_raises_storage_unavailable(clock: Clock) -> None:
    settings = {"host": "127.0.0.1", "port": 1, "timeout": 200}
    limiter = build_limiter({"sync_rate": 0, "redis": settings}, clock=clock, storage=None)
    with pytest.raises(StorageUnavailable):
        limiter.consume("k", (Limit(1, 60),))


def test_settings_follow_kong_and_tolerate_nulls() -> None:
    s = RedisSettings.from_config({"host": "redis", "port": None, "database": None,
                                   "username": None, "password": None, "ssl": None,
                                   "ssl_verify": None, "server_name": None, "timeout": None})
    assert (s.port, s.database, s.timeout, s.ssl) == (6379, 0, 2000, False)
    client = client_for(RedisSettings("redis", timeout=250, ssl=True, server_name="r.example"))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.25 and kwargs["server_name"] == "r.example"
    assert isinstance(RedisStorage(client), RedisStorage)


@pytest.mark.parametrize(
    ("settings", "place"),
    [
        ({"sync_rate": 0.01, "redis": {"host": "r"}}, "rate_limiting.sync_rate"),
        ({"sync_rate": -1, "redis": {"host": "r"}}, "rate_limiting.sync_rate"),
        ({"sync_rate": True, "redis": {"host": "r"}}, "rate_limiting.sync_rate"),
        ({"sync_rate": 0}, "rate_limiting.redis"),
        ({"sync_rate": 1, "redis": {"host": None}}, "rate_limiting.redis.host"),
        ({"sync_rate": 0, "redis": {"host": "r", "port": "x"}}, "rate_limiting.redis.port"),
        ({"window_type": "moving"}, "rate_limiting.window_type"),
    ],
)
def test_config_errors_name_the_field(settings: dict[str, Any], place: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_limiter(settings, clock=Clock(), storage=None)
    assert err.value.place == place


def test_minimum_sync_rate_is_accepted(clock: Clock) -> None:
    limiter = build_limiter({"sync_rate": 0.02, "redis": {"host": "127.0.0.1", "port": 1}},
                            clock=clock, storage=None)
    assert limiter.storage.sync_rate == 0.02


def test_username_and_password(redis_db: RedisServer, clock: Clock) -> None:
    redis_db.client().acl_setuser("ace", enabled=True, passwords=["+s3cret"],
                                  keys=["ace:rl:*"], commands=["+@all"])
    good = dict(redis_db.settings, username="ace", password="s3cret")
    assert build_limiter({"sync_rate": 0, "redis": good}, clock=clock,
                         storage=None).consume("k", (Limit(1, 60),)).allowed
    bad = dict(good, password="wrong")
    with pytest.raises(StorageUnavailable):
        build_limiter({"sync_rate": 0, "redis": bad}, clock=clock,
                      storage=None).consume("k", (Limit(1, 60),))
