"""Two real Kong nodes, one real Redis: a package limit is shared exactly (`sync_rate: 0`).

The distributed story users run: every node has its own plugin server, every request is
charged in Redis by one atomic script (SPEC §5), so N concurrent requests spread over both
nodes admit exactly ``limit`` whichever node they hit. Without `sync_rate` each node counts
alone: the same traffic admits ``limit`` per node, which the test shows as well.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.realkong.kong import KongNode, Upstream, ace_config, header
from tests.redis_server import RedisServer, running

KEY = "ace_cluster_0123456789abcdef"
LIMIT = 25
REQUESTS = 60  # 30 per node
CLIENTS = 8


def cluster_ace(package: str, rate_limiting: dict[str, Any]) -> dict[str, Any]:
    """One API, one package with a daily limit (no window edge inside a test), one key.

    ``GET /probe/<package>`` is an operation of no package: 403 tells this config decides.
    """
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    return {
        "match_policy": "required",
        "apis": [{"name": "items", "operations": [{"method": "GET", "path": "/items"}]},
                 {"name": "probe", "operations": [{"method": "GET", "path": f"/probe/{package}"}]}],
        "packages": [{"name": package, "operations": [{"api": "items"}],
                      "rate_limits": [{"limit": LIMIT, "duration": "days"}]}],
        "applications": [{"id": "app", "credentials": [{"key_hash": f"sha256:{digest}"}],
                          "registrations": [{"package": package, "status": "approved"}]}],
        "rate_limiting": rate_limiting,
    }


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server on a free port, shared by the nodes of this module."""
    with running(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


def spread(nodes: list[KongNode]) -> list[tuple[int, int]]:
    """REQUESTS concurrent requests, alternating over ``nodes``: (node index, status) each."""
    order = list(itertools.islice(itertools.cycle(range(len(nodes))), REQUESTS))

    def one(i: int) -> tuple[int, int]:
        return i, nodes[i].request("GET", "/items", {"apikey": KEY}).status

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, order))


@pytest.fixture(scope="module")
def pair(kong_node: Callable[..., KongNode], upstream: Upstream) -> Iterator[list[KongNode]]:
    """Two DB-less nodes, each with its own Kong-managed plugin server (started once: each
    test gives them its config through POST /config, in the mode it tests)."""
    start = ace_config(upstream.url, cluster_ace("start", {}))
    nodes = [kong_node(start), kong_node(start)]
    yield nodes
    for node in nodes:
        node.cleanup()


def configure(nodes: list[KongNode], mode: str, config: dict[str, Any]) -> None:
    """POST /config to every node, companions added or left out as ``mode`` says; returns
    once each node decides with it."""
    package = config["plugins"][0]["config"]["packages"][0]["name"]
    for node in nodes:
        node.mode = mode
        status, body = node.post_config(config)
        assert status == 201, body
        deadline = time.monotonic() + 30
        while node.request("GET", f"/probe/{package}", {"apikey": KEY}).status != 403:
            assert time.monotonic() < deadline, "the new config never decided"
            time.sleep(0.05)


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_two_nodes_share_a_package_limit_exactly(
        mode: str, pair: list[KongNode], upstream: Upstream, redis: RedisServer) -> None:
    assert pair[0].server_pids() and pair[0].server_pids() != pair[1].server_pids()
    shared = {"sync_rate": 0, "redis": redis.settings, "fault_tolerant": False}
    configure(pair, mode, ace_config(upstream.url, cluster_ace(f"shared-{mode}", shared)))
    upstream.clear()
    results = spread(pair)
    statuses = Counter(status for _, status in results)
    print(f"\n{mode}: 2 nodes, sync_rate 0, limit {LIMIT}, {REQUESTS} requests from "
          f"{CLIENTS} clients: {dict(statuses)}; per node {dict(Counter(results))}")
    assert statuses == Counter({200: LIMIT, 429: REQUESTS - LIMIT})
    assert Counter(i for i, _ in results) == Counter({0: REQUESTS // 2, 1: REQUESTS // 2})
    admitted = upstream.received
    assert len(admitted) == LIMIT
    assert all(header(r, "X-ACE-Application-ID") == ["app"] for r in admitted)

    # The same traffic with counters in each node's memory (no sync_rate): each node admits
    # the limit on its own, so the two admit twice as much.
    configure(pair, mode, ace_config(upstream.url, cluster_ace(f"alone-{mode}", {})))
    statuses = Counter(status for _, status in spread(pair))
    print(f"{mode}: 2 nodes, in-memory counters: {dict(statuses)}")
    assert statuses == Counter({200: 2 * LIMIT, 429: REQUESTS - 2 * LIMIT})
