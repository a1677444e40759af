"""Redis Cluster and Sentinel: exact counting, hash slots, MOVED/ASK, and killed primaries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kong_ace import Enforcer
from kong_ace.limits.breaker import OPEN_SECONDS
from kong_ace.limits.limiter import Limit, build_limiter
from kong_ace.limits.redis_settings import RedisSettings
from kong_ace.limits.storage import MemoryStorage
from kong_ace.limits.storage.base import tagged_counter_key
from kong_ace.limits.storage.redis import client_for

from ..redis_topologies import RedisClusterNodes, RedisSentinelSet, wait_for
from .conftest import T0, Clock
from .test_enforcer_limits import config_with, hammer, list_flights

# The web app's package bucket in the example config (what Enforcer charges for list_flights).
BUCKET = "web-app|pkg:flights-basic"


def topology(request: pytest.FixtureRequest, kind: str) -> Any:
    return request.getfixturevalue("cluster_db" if kind == "cluster" else "sentinel_db")


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
def test_exact_across_two_gateway_nodes_under_threads(
    kind: str, request: pytest.FixtureRequest
) -> None:
    deployment = topology(request, kind)
    clock = Clock(T0 + 1)
    config = config_with(60, sync_rate=0, redis=deployment.settings)
    nodes = [Enforcer(config, clock=clock, storage=MemoryStorage()) for _ in range(2)]
    calls = [lambda n=n: n.decide(list_flights()).allowed for n in nodes for _ in range(6)]
    assert hammer(calls, 15) == 60  # 180 requests from 12 threads on 2 nodes


def test_cluster_keys_of_one_request_share_a_hash_slot(cluster_db: RedisClusterNodes) -> None:
    clock = Clock(T0 + 75)
    limiter = build_limiter({"sync_rate": 0, "redis": cluster_db.settings}, clock=clock)
    limits = (Limit(5, 1), Limit(10, 60), Limit(100, 3600), Limit(1000, 86400))
    for bucket in ("web|pkg:basic", "}odd{|pkg", "50%}|op:x"):
        assert limiter.consume(bucket, limits).allowed  # one script, four windows, one slot
        clock.advance(1)
        assert limiter.consume(bucket, limits).headers["X-RateLimit-Remaining-Minute"] == "8"
    client = cluster_db.client()
    keys = [k.decode() for n in cluster_db.primaries() for k in n.client().keys("*")]
    assert f"ace:rl:{{web|pkg:basic}}|60|{int(T0) + 60}" in keys
    assert len(keys) == 3 * 5  # per bucket: 1 s twice (two seconds), 60 s, 3600 s, 86400 s
    slots = {b: {client.keyslot(k) for k in keys if k.startswith(tagged_counter_key(b, 1, 0)[:9])}
             for b in ("web", "}odd", "50%")}
    assert all(len(s) == 1 for s in slots.values()), slots


def _start_migration(cluster: RedisClusterNodes, key: str) -> tuple[Any, int]:
    """Move key's slot's keys to another primary, as `redis-cli --cluster reshard` does.

    The slot stays MIGRATING on the old owner and IMPORTING on the new one, its keys already
    moved: the old owner answers ASK. Returns the new owner and the slot.
    """
    source = cluster.primary_for(key)
    target = next(n for n in cluster.primaries() if n is not source)
    slot = cluster.client().keyslot(key)
    src, dst = source.client(), target.client()
    src_id, dst_id = src.cluster("myid").decode(), dst.cluster("myid").decode()
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    assert keys  # the counter written before
    src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    return target, slot


def _finish_migration(cluster: RedisClusterNodes, target: Any, slot: int) -> None:
    """Tell every primary the slot's new owner: the old one now answers MOVED."""
    dst_id = target.client().cluster("myid").decode()
    for n in cluster.primaries():
        n.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def test_cluster_counting_survives_ask_and_moved_during_a_resharding(
    cluster_db: RedisClusterNodes,
) -> None:
    clock = Clock(T0 - 30)
    settings = {"sync_rate": 0, "redis": cluster_db.settings, "window_type": "fixed"}
    limiter = build_limiter(settings, clock=clock)
    limits = (Limit(10, 60),)
    key = tagged_counter_key(BUCKET, 60, int(T0))
    # Both keys of the script (this minute's and the previous one's) exist before the move:
    # while a slot moves, Redis answers TRYAGAIN to a multi-key call that finds only some of
    # them on either side (docs/rate-limits.md: the call fails and fault_tolerant applies).
    assert limiter.consume(BUCKET, limits).allowed
    clock.now = T0 + 1
    assert sum(limiter.consume(BUCKET, limits).allowed for _ in range(3)) == 3
    before = cluster_db.primary_for(key)

    target, slot = _start_migration(cluster_db, key)  # the client's map still says `before`
    via_ask = [limiter.consume(BUCKET, limits) for _ in range(3)]  # the old owner says ASK
    assert [r.headers["X-RateLimit-Remaining-Minute"] for r in via_ask] == ["6", "5", "4"]
    _finish_migration(cluster_db, target, slot)
    assert cluster_db.primary_for(key) is target is not before
    # Every hit landed on the one counter that moved with its slot: exactly 10 in all.
    assert sum(limiter.consume(BUCKET, limits).allowed for _ in range(10)) == 4  # via MOVED
    assert target.client().get(key) == b"10"
    assert before.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


def deployment_state(deployment: Any) -> str:
    """What the servers say, for a failure message."""
    out = []
    for p in getattr(deployment, "servers", getattr(deployment, "nodes", [])):
        if p.proc is not None:
            info = p.client().info("replication")
            out.append(f"{p.port}:{info['role']}:{info.get('master_link_status')}")
    if isinstance(deployment, RedisClusterNodes):
        client = client_for(RedisSettings.from_config(deployment.settings))
        slot = client.keyslot(tagged_counter_key(BUCKET, 86400, int(T0)))
        out.append(f"client sends slot {slot} to {client.nodes_manager.slots_cache[slot][0].name}")
    if isinstance(deployment, RedisSentinelSet):
        out.append(f"sentinels say {deployment.primary_address()}")
    return " ".join(out)


class Load:
    """Threads sending requests through two Enforcers until stopped; records every outcome."""

    def __init__(self, nodes: list[Enforcer], threads: int = 4) -> None:
        self.nodes = nodes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counted = 0  # admitted with rate-limit headers: charged in Redis
        self.remaining: list[str] = []  # their RateLimit-Remaining
        self.uncounted = 0  # admitted by fault_tolerant, without headers
        self.limited = 0
        self.failed = 0  # 500 (fault_tolerant false)
        self.threads = [threading.Thread(target=self._run, args=(nodes[i % len(nodes)],))
                        for i in range(threads)]

    def _run(self, node: Enforcer) -> None:
        while not self.stop.is_set():
            d = node.decide(list_flights())
            with self.lock:
                if d.allowed and d.headers:
                    self.counted += 1
                    self.remaining.append(d.headers["RateLimit-Remaining"])
                elif d.allowed:
                    self.uncounted += 1
                elif d.status == 429:
                    self.limited += 1
                else:
                    assert d.status == 500, d
                    self.failed += 1
            time.sleep(0.001)  # steady load that leaves CPU to the Redis processes (2 cores)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def _kill_primary_under_load(
    deployment: Any, kill: Callable[[], None], new_primary_ready: Callable[[], bool],
    counter: Callable[[], int], tolerant: bool,
) -> Load:
    """Run load, kill the primary holding the counter, wait for the failover and the limit."""
    limit = 400
    clock = Clock(T0 + 1)
    config = config_with(0, sync_rate=0, redis=deployment.settings, fault_tolerant=tolerant)
    # Per day, so moving the clock past the breakers' open interval keeps the same window.
    config["packages"][0]["rate_limits"] = [{"limit": limit, "duration": "days"}]
    nodes = [Enforcer(config, clock=clock, storage=MemoryStorage()) for _ in range(2)]
    with Load(nodes) as load:
        wait_for(lambda: load.counted >= 50, "some counted requests")
        kill()
        counted_at_kill = load.counted

        def recovered() -> bool:
            clock.advance(OPEN_SECONDS)  # let the breakers probe again (polled every 50 ms)
            return new_primary_ready() and load.counted > counted_at_kill + 20

        try:
            wait_for(recovered, "the failover", 60)
        except RuntimeError:
            raise AssertionError(
                f"no failover: counted {counted_at_kill} -> {load.counted}, uncounted "
                f"{load.uncounted}, failed {load.failed}, new primary {new_primary_ready()}; "
                f"{deployment_state(deployment)}"
            ) from None
        wait_for(lambda: load.limited > 20, "the limit to be reached", 60)
    # Redis replicates asynchronously: charges the primary acknowledged but had not yet passed
    # to its replica die with it (docs/rate-limits.md, Topologies). Each such loss shows as two
    # admitted requests that saw the same remaining count; none on an idle machine, some when the
    # replica is starved of CPU.
    lost = len(load.remaining) - len(set(load.remaining))
    # Nothing admitted beyond the limit but what replication lost, and nothing charged twice.
    assert load.counted <= limit + lost
    assert counter() == limit  # the limit was reached on the counter the new primary holds
    # A request in flight when the primary died may have been charged with its answer lost
    # (a 500, or admitted uncounted): at most one per load thread.
    assert limit + lost - load.counted <= len(load.threads)
    if tolerant:
        assert load.failed == 0
    else:
        assert load.uncounted == 0
    return load


@pytest.mark.parametrize("tolerant", [False, True])
def test_sentinel_failover_under_load(sentinel_db: RedisSentinelSet, tolerant: bool) -> None:
    old = sentinel_db.primary()
    key = f"ace:rl:{BUCKET}|86400|{int(T0)}"
    load = _kill_primary_under_load(
        sentinel_db, old.kill,
        lambda: sentinel_db.primary_address()[1] != old.port,
        lambda: int(sentinel_db.primary().client().get(key)), tolerant,
    )
    # The outage was seen: refused (false) or admitted uncounted (true) while no primary.
    assert (load.failed if not tolerant else load.uncounted) > 0


@pytest.mark.parametrize("tolerant", [False, True])
def test_cluster_primary_killed_under_load(cluster_db: RedisClusterNodes, tolerant: bool) -> None:
    key = tagged_counter_key(BUCKET, 86400, int(T0))
    old = cluster_db.primary_for(key)

    def promoted() -> bool:
        try:
            return cluster_db.primary_for(key) is not old
        except RuntimeError:  # no node serves the slot until the replica takes over
            return False

    load = _kill_primary_under_load(
        cluster_db, old.kill, promoted,
        lambda: int(cluster_db.primary_for(key).client().get(key)), tolerant,
    )
    assert (load.failed if not tolerant else load.uncounted) > 0
