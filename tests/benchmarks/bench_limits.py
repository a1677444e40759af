"""Rate-limit benchmark: consume cost per store, Redis round trip, sync_rate > 0 overshoot.

Run: .venv/bin/python tests/benchmarks/bench_limits.py
Starts its own redis-server on a free loopback port (no persistence) and stops it at the end.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kong_ace.limits.limiter import Limit, Limiter, build_limiter  # noqa: E402
from kong_ace.limits.storage import MemoryStorage  # noqa: E402
from kong_ace.limits.storage.synced import SyncedStorage  # noqa: E402
from tests.limits.conftest import Clock, RedisServer  # noqa: E402

ONE = (Limit(1_000_000_000, 60),)
TWO = (Limit(1_000_000_000, 1), Limit(1_000_000_000, 60))


def per_call(limiter: Limiter, limits: tuple[Limit, ...], n: int, rounds: int = 7) -> float:
    """Median over rounds of the mean time per consume over 1000 buckets, in microseconds."""
    keys = [f"app{i}|pkg:basic" for i in range(1000)]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            limiter.consume(keys[i % 1000], limits)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def consume_costs(server: RedisServer) -> None:
    print("consume cost (median us per call, time.time clock, 1000 buckets, admitted):")
    for window in ("fixed", "sliding"):
        for name, settings, n in (
            ("memory", {}, 50_000),
            ("memory, hide_client_headers", {"hide_client_headers": True}, 50_000),
            ("redis sync_rate=0", {"sync_rate": 0, "redis": server.settings}, 3_000),
            ("redis sync_rate=1 (local)", {"sync_rate": 1, "redis": server.settings}, 50_000),
        ):
            root = MemoryStorage()
            limiter = build_limiter({"window_type": window, **settings}, storage=root)
            one, two = per_call(limiter, ONE, n), per_call(limiter, TWO, n)
            print(f"  {window:8} {name:30} 1 limit {one:7.2f}   2 limits {two:7.2f}")
            root.close()
    client = server.client()
    start = time.perf_counter()
    for _ in range(3000):
        client.ping()
    ping = (time.perf_counter() - start) / 3000 * 1e6
    print(f"  redis-py PING round trip for reference: {ping:.2f} us")


def overshoot_simulated(server: RedisServer, limit: int, rate: float, sync: float) -> int:
    """Two nodes, alternating requests at `rate` per second each, fake clock; extra admits."""
    server.client().flushall()
    clock = Clock(19_700 * 86_400.0)
    nodes = []
    for _ in range(2):
        limiter = build_limiter({"sync_rate": 3600, "redis": server.settings,
                                 "window_type": "fixed"}, clock=clock, storage=MemoryStorage())
        nodes.append(limiter)
    stores = [n.storage for n in nodes]
    assert all(isinstance(s, SyncedStorage) for s in stores)
    limits = (Limit(limit, 60),)
    step = 1 / (2 * rate)  # the two nodes take turns
    next_sync = [clock.now + sync, clock.now + sync / 2]  # sync phases differ between nodes
    admitted = 0
    end = clock.now + 60
    while clock.now < end:
        for node in nodes:
            admitted += node.consume("app|pkg:a", limits).allowed
            clock.advance(step)
            for j, s in enumerate(stores):
                while clock.now >= next_sync[j]:
                    s.sync_now()  # type: ignore[attr-defined]
                    next_sync[j] += sync
    for s in stores:
        s.close()  # type: ignore[attr-defined]
    return admitted - limit


def overshoot_real_time(server: RedisServer, limit: int, rate: float, sync: float) -> int:
    """Two nodes with their real sync threads, each client thread paced at `rate` per second."""
    server.client().flushall()
    roots = [MemoryStorage(), MemoryStorage()]
    nodes = [build_limiter({"sync_rate": sync, "redis": server.settings, "window_type": "fixed"},
                           storage=r) for r in roots]
    limits = (Limit(limit, 60),)
    key = f"rt|{time.time()}"
    admitted = [0, 0]
    duration = min(3.0, 2.5 * limit / (2 * rate))  # well past the point the limit is spent

    def client(i: int) -> None:
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - start < duration:
            admitted[i] += nodes[i].consume(key, limits).allowed
            n += 1
            time.sleep(max(0.0, start + n / rate - now))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in roots:
        r.close()
    return sum(admitted) - limit


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            consume_costs(server)
            print("sync_rate > 0 overshoot, 2 nodes, alternating requests, fixed 1-minute window:")
            for limit, rate, sync in ((100, 10, 0.02), (100, 10, 0.1), (100, 10, 1),
                                      (1000, 100, 0.1), (1000, 100, 1), (1000, 100, 5)):
                extra = overshoot_simulated(server, limit, rate, sync)
                print(f"  simulated  limit {limit:5}/min  {rate:4} req/s per node  "
                      f"sync_rate {sync:5}: +{extra} ({100 * extra / limit:.1f}%)")
            for limit, rate, sync in ((200, 200, 0.1), (200, 200, 0.5)):
                extra = overshoot_real_time(server, limit, rate, sync)
                print(f"  real time  limit {limit:5}/min  {rate:4} req/s per node  "
                      f"sync_rate {sync:5}: +{extra} ({100 * extra / limit:.1f}%)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
