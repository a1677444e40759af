"""rate_limiting.redis: Kong ACE's names and defaults, topology rules, and the clients built."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.sentinel import SentinelConnectionPool

from kong_ace import ConfigError
from kong_ace.core.catalog import compile_catalog
from kong_ace.limits.redis_settings import RedisSettings
from kong_ace.limits.storage.base import StorageUnavailable, tagged_counter_key
from kong_ace.limits.storage.redis import RedisStorage, client_for

from ..conftest import example_config
from ..redis_topologies import RedisClusterNodes, RedisSentinelSet

PLACE = "rate_limiting.redis"


def test_kong_ace_defaults() -> None:
    s = RedisSettings.from_config({"host": "r"})
    assert (s.port, s.database, s.ssl, s.ssl_verify) == (6379, 0, False, False)
    assert (s.connect_seconds, s.socket_seconds) == (2.0, 2.0)
    assert (s.keepalive_pool_size, s.cluster_max_redirections) == (256, 5)
    assert s.sentinel_role == "master"
    assert s.topology == "single"


def test_old_timeout_fills_the_three_timeouts_left_unset() -> None:
    s = RedisSettings.from_config({"host": "r", "timeout": 300, "read_timeout": 700,
                                   "connect_timeout": None})
    assert s.connect_seconds == 0.3
    assert s.socket_seconds == 0.7  # redis-py has one send/receive timeout: the larger
    s = RedisSettings.from_config({"host": "r", "connect_timeout": 100, "send_timeout": 200,
                                   "read_timeout": 150})
    assert (s.connect_seconds, s.socket_seconds) == (0.1, 0.2)


def test_cluster_and_sentinel_nodes_take_kongs_node_defaults() -> None:
    c = RedisSettings.from_config({"cluster_nodes": [{"ip": "10.0.0.1", "port": 7000},
                                                     {"ip": None, "port": None}],
                                   "host": None, "cluster_max_redirections": 2})
    assert c.topology == "cluster"
    assert c.cluster_nodes == (("10.0.0.1", 7000), ("127.0.0.1", 6379))
    s = RedisSettings.from_config({"sentinel_master": "m", "sentinel_role": "any",
                                   "sentinel_nodes": [{"host": "s1", "port": 26379}]})
    assert (s.topology, s.sentinel_nodes, s.sentinel_role) == ("sentinel", (("s1", 26379),), "any")


def test_repr_never_shows_passwords() -> None:
    s = RedisSettings.from_config({"host": "r", "password": "hunter2",
                                   "sentinel_password": "x" * 8})
    assert "hunter2" not in repr(s) and "xxxxxxxx" not in repr(s)


@pytest.mark.parametrize(
    ("conf", "place"),
    [
        ({"cluster_nodes": [{"ip": "a"}], "sentinel_master": "m",
          "sentinel_nodes": [{"host": "s"}]}, f"{PLACE}.cluster_nodes"),
        ({"cluster_nodes": [{"ip": "a"}], "database": 2}, f"{PLACE}.database"),
        ({"sentinel_master": "m"}, f"{PLACE}.sentinel_nodes"),
        ({"sentinel_nodes": [{"host": "s"}]}, f"{PLACE}.sentinel_master"),
        ({"sentinel_master": "m", "sentinel_nodes": [{"host": "s"}], "sentinel_role": "primary"},
         f"{PLACE}.sentinel_role"),
        ({"cluster_nodes": [{"ip": "a", "port": 70000}]}, f"{PLACE}.cluster_nodes[0].port"),
        ({"cluster_nodes": [{"ip": "a"}, {"host": "b"}]}, f"{PLACE}.cluster_nodes[1].host"),
        ({"cluster_nodes": "a:1"}, f"{PLACE}.cluster_nodes"),
        ({"sentinel_master": "m", "sentinel_nodes": [{"host": ""}]},
         f"{PLACE}.sentinel_nodes[0].host"),
        ({"host": "r", "read_timeout": 0}, f"{PLACE}.read_timeout"),
        ({"host": "r", "keepalive_pool_size": 0}, f"{PLACE}.keepalive_pool_size"),
        ({"host": "r", "cluster_max_redirections": "5"}, f"{PLACE}.cluster_max_redirections"),
        ({"host": "r", "sentinel_password": 1}, f"{PLACE}.sentinel_password"),
        ({}, f"{PLACE}.host"),
    ],
)
def test_errors_name_the_field(conf: dict[str, Any], place: str) -> None:
    with pytest.raises(ConfigError) as err:
        RedisSettings.from_config(conf)
    assert err.value.place == place


def test_the_catalog_checks_the_redis_record_and_the_headers_option() -> None:
    config = example_config()
    config["rate_limiting"].update(sync_rate=0, redis={
        "cluster_nodes": [{"ip": "a", "port": 1}], "sentinel_master": "m",
        "sentinel_nodes": [{"host": "s", "port": 2}]})
    with pytest.raises(ConfigError) as err:
        compile_catalog(config)
    assert err.value.place == f"{PLACE}.cluster_nodes"
    config["rate_limiting"]["redis"] = {"host": "r", "cluster_node": []}
    with pytest.raises(ConfigError) as err:
        compile_catalog(config)
    assert err.value.place == f"{PLACE}.cluster_node"
    config["rate_limiting"] = {"headers": "draft"}
    with pytest.raises(ConfigError) as err:
        compile_catalog(config)
    assert err.value.place == "rate_limiting.headers"


def test_clients_are_redis_pys_own(redis_cluster: RedisClusterNodes,
                                   redis_sentinel: RedisSentinelSet) -> None:
    cluster = client_for(RedisSettings.from_config(
        dict(redis_cluster.settings, cluster_max_redirections=3, keepalive_pool_size=7)))
    assert isinstance(cluster, RedisCluster) and cluster.RedisClusterRequestTTL == 4
    node = cluster.get_default_node().redis_connection
    assert node.connection_pool.max_connections == 7
    sentinel = client_for(RedisSettings.from_config(
        dict(redis_sentinel.settings, sentinel_role="slave")))
    pool = sentinel.connection_pool
    # Counting writes on every request: the primary, whatever sentinel_role says.
    assert isinstance(pool, SentinelConnectionPool) and pool.is_master
    assert pool.connection_kwargs["socket_timeout"] == 0.5


def test_a_cluster_down_at_config_time_is_unavailable_not_a_config_error() -> None:
    settings = RedisSettings.from_config({"cluster_nodes": [{"ip": "127.0.0.1", "port": 1}],
                                          "timeout": 100})
    storage = RedisStorage(settings=settings)  # builds nothing yet: config loads with Redis down
    assert storage.key is tagged_counter_key
    with pytest.raises(StorageUnavailable):
        storage.acquire("a|b", [(60, 1, 0, 0.0)], 1.0)


def test_tagged_keys_escape_braces_so_the_tag_is_the_whole_bucket() -> None:
    assert tagged_counter_key("web|pkg:a", 60, 120) == "ace:rl:{web|pkg:a}|60|120"
    assert tagged_counter_key("}a", 60, 0) == "ace:rl:{%7Da}|60|0"
    assert tagged_counter_key("a%7D", 1, 0) != tagged_counter_key("a}", 1, 0)


def test_a_cluster_client_failing_for_10_s_is_built_again(cluster_db: RedisClusterNodes) -> None:
    settings = RedisSettings.from_config(dict(cluster_db.settings, keepalive_pool_size=9))
    storage = RedisStorage(settings=settings)
    now = [1000.0]
    storage.monotonic = lambda: now[0]
    window = [(60, 100, 0, 0.0)]
    assert storage.acquire("a|b", window, 1.0)[0]
    stuck = storage.client

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Error 111 connecting: refused")

    stuck.execute_command = refuse  # type: ignore[method-assign]  # a stale slot map, say
    for _ in range(3):  # failing for 0, 4 and 8 s
        with pytest.raises(StorageUnavailable):
            storage.acquire("a|b", window, 1.0)
        now[0] += 4.0
    assert storage.client is stuck
    with pytest.raises(StorageUnavailable):
        storage.acquire("a|b", window, 1.0)  # failing for 12 s: rebuilt from cluster_nodes
    assert storage.client is not stuck
    assert client_for(settings) is storage.client
    assert storage.acquire("a|b", window, 1.0) == (True, [(1, 0)])
