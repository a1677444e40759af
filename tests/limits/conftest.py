"""Rate-limit fixtures: a real redis-server on a free loopback port, a fake clock, limiter nodes."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kong_ace.limits.limiter import Limiter, RateResult, build_limiter
from kong_ace.limits.storage import MemoryStorage

from ..redis_server import RedisServer, running
from ..redis_topologies import RedisClusterNodes, RedisSentinelSet

# A day boundary (UTC midnight), so every window of every period starts here.
T0 = 19_700 * 86_400.0


class Clock:
    """Injected time; tests move it by hand and never sleep for window arithmetic."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session server, running and empty for this test."""
    if redis_server.proc is None:  # a test that stopped it failed before starting it again
        redis_server.start()
    redis_server.client().flushall()
    yield redis_server
    if redis_server.proc is None:
        redis_server.start()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A Redis Cluster (3 primaries with a replica each), started once per session."""
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is missing: run `bash .ci/setup`")
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_db(redis_cluster: RedisClusterNodes) -> Iterator[RedisClusterNodes]:
    """The session Cluster, healthy and empty (a fault test may have killed a node before)."""
    for node in redis_cluster.nodes:
        if node.proc is None:
            node.start()  # rejoins as a replica of the node promoted in its place
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    yield redis_cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelSet]:
    """A primary, a replica and three sentinels, started once per session."""
    sentinels = RedisSentinelSet(tmp_path_factory.mktemp("sentinel"))
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.stop()


@pytest.fixture
def sentinel_db(redis_sentinel: RedisSentinelSet) -> Iterator[RedisSentinelSet]:
    """The session Sentinel set, healthy and empty for this test."""
    redis_sentinel.restart_killed()  # a fault test killed the primary: back as a replica
    redis_sentinel.wait_healthy()
    redis_sentinel.flush()
    yield redis_sentinel


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Node:
    """One gateway node's limiter; with sync_each, synced counters sync after every request."""

    def __init__(self, limiter: Limiter, sync_each: bool) -> None:
        self.limiter = limiter
        self.sync_each = sync_each

    def consume(self, key: str, limits: Any) -> RateResult:
        result = self.limiter.consume(key, limits)
        if self.sync_each:
            self.limiter.storage.sync_now()  # type: ignore[attr-defined]
        return result

    def admitted(self, key: str, limits: Any, n: int) -> int:
        """How many of n requests are admitted."""
        return sum(self.consume(key, limits).allowed for _ in range(n))


# Store kind -> (fixture giving the Redis deployment, sync_rate): memory has none; sync_rate
# 3600 means synced counters whose background thread never fires during a test.
STORES = {
    "memory": (None, None),
    "redis": ("redis_db", 0),
    "synced": ("redis_db", 3600),
    "cluster": ("cluster_db", 0),
    "cluster-synced": ("cluster_db", 3600),
    "sentinel": ("sentinel_db", 0),
    "sentinel-synced": ("sentinel_db", 3600),
}


@pytest.fixture(params=list(STORES))
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_node(
    store_kind: str, clock: Clock, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Node]]:
    """Builds nodes on the parametrized store; a new MemoryStorage root per node by default."""
    roots: list[MemoryStorage] = []
    fixture, sync_rate = STORES[store_kind]
    server = request.getfixturevalue(fixture) if fixture else None

    def make(root: MemoryStorage | None = None, **settings: Any) -> Node:
        settings.setdefault("window_type", "fixed")
        if server is not None:
            # sync_rate 3600: the background thread never fires during a test; the node syncs
            # explicitly after every request instead, so the results are deterministic.
            settings["sync_rate"] = sync_rate
            settings["redis"] = server.settings
        if root is None:
            root = MemoryStorage()
            roots.append(root)
        return Node(build_limiter(settings, clock=clock, storage=root), bool(sync_rate))

    yield make
    for root in roots:
        root.close()
