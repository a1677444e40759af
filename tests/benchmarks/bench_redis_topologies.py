"""Redis topologies and faults: consume cost per topology, and a blackholed Redis with and
without the circuit breaker.

Run: .venv/bin/python tests/benchmarks/bench_redis_topologies.py
Starts its own redis-server, a 3-primary Redis Cluster (with replicas) and a primary/replica
with 3 sentinels on free loopback ports, and a blackhole (accepts, never answers); stops all.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kong_ace.limits.breaker import (  # noqa: E402
    FAILURES_TO_OPEN,
    OPEN_SECONDS,
    CircuitBreaker,
)
from kong_ace.limits.limiter import Limit, StorageUnavailable, build_limiter  # noqa: E402
from kong_ace.limits.redis_settings import RedisSettings  # noqa: E402
from kong_ace.limits.storage import MemoryStorage  # noqa: E402
from kong_ace.limits.storage.redis import RedisStorage  # noqa: E402
from tests.limits.conftest import Clock  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.redis_topologies import Blackhole, RedisClusterNodes, RedisSentinelSet  # noqa: E402

TWO = (Limit(1_000_000_000, 1), Limit(1_000_000_000, 60))
BLACKHOLE_TIMEOUT_MS = 100
BLACKHOLE_REQUESTS = 50
BLACKHOLE_REQUESTS_BREAKER = 1200  # one minute of simulated traffic
ARRIVAL_S = 0.05


def per_call(limiter, n: int = 2000, rounds: int = 5) -> float:  # noqa: ANN001
    """Median over rounds of the mean microseconds per consume over 1000 buckets."""
    keys = [f"app{i}|pkg:basic" for i in range(1000)]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            limiter.consume(keys[i % 1000], TWO)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def consume_costs(single: RedisServer, cluster: RedisClusterNodes,
                  sentinel: RedisSentinelSet) -> None:
    print("consume cost, 2 limits (median us per call, 1000 buckets, sliding, admitted):")
    memory = per_call(build_limiter({}, storage=MemoryStorage()), 20_000)
    print(f"  {'memory':34} {memory:8.1f}")
    for name, redis in (("single redis", single.settings), ("cluster (3 primaries)",
                        cluster.settings), ("sentinel primary", sentinel.settings)):
        for sync_rate in (0, 1):
            root = MemoryStorage()
            limiter = build_limiter({"sync_rate": sync_rate, "redis": redis}, storage=root)
            n = 2000 if sync_rate == 0 else 20_000
            label = f"{name}, sync_rate={sync_rate}"
            print(f"  {label:34} {per_call(limiter, n):8.1f}")
            root.close()


def blackhole_latency() -> None:
    print(f"blackholed Redis (accepts, never answers), timeout {BLACKHOLE_TIMEOUT_MS} ms, "
          f"sync_rate 0, one request every {ARRIVAL_S * 1000:.0f} ms of (simulated) time:")
    for label, with_breaker, n in (("without breaker", False, BLACKHOLE_REQUESTS),
                                   ("with breaker", True, BLACKHOLE_REQUESTS_BREAKER)):
        hole = Blackhole()
        clock = Clock(time.time())
        store = RedisStorage(settings=RedisSettings.from_config(
            hole.settings(BLACKHOLE_TIMEOUT_MS)),
            breaker=CircuitBreaker(clock) if with_breaker else None)
        added = []
        for _ in range(n):
            start = time.perf_counter()
            with contextlib.suppress(StorageUnavailable):
                store.acquire("app|pkg:a", [(60, 10, 0, 0.0)], clock())
            added.append((time.perf_counter() - start) * 1000)
            clock.advance(ARRIVAL_S)  # the breaker's interval runs on this clock
        hole.close()
        waited = sum(1 for ms in added if ms >= BLACKHOLE_TIMEOUT_MS / 2)
        print(f"  {label:16} {n:5} requests  mean {statistics.mean(added):7.2f} ms  median "
              f"{statistics.median(added):7.3f} ms  max {max(added):6.1f} ms  "
              f"waited a timeout: {waited}")
    print(f"  (breaker: opens after {FAILURES_TO_OPEN} consecutive failures, then one probe "
          f"every {OPEN_SECONDS:.0f} s)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for sub in ("single", "cluster", "sentinel"):
            (base / sub).mkdir()
        single = RedisServer(base / "single")
        cluster = RedisClusterNodes(base / "cluster")
        sentinel = RedisSentinelSet(base / "sentinel")
        try:
            single.start()
            started = time.perf_counter()
            cluster.start()
            print(f"cluster start-up (6 nodes + create): {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            sentinel.start()
            print(f"sentinel start-up (2 servers + 3 sentinels): "
                  f"{time.perf_counter() - started:.1f} s")
            consume_costs(single, cluster, sentinel)
        finally:
            single.stop()
            cluster.stop()
            sentinel.stop()
    blackhole_latency()


if __name__ == "__main__":
    main()
