"""Measure the plugin server's cost per request: ``python -m kong_ace.testing.bench``.

Drives the real server through simulated nginx workers (one thread and one connection each)
and reports throughput, per-request latency and the server process's CPU time per request.
``tests/benchmarks/bench_all.py`` builds its end-to-end figures from ``drive``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import hash_key
from .kong import KongNode
from .pdk import KongRequest
from .process import PluginServerProcess

KEY = "bench-key-0123456789"
LIMITED_KEY = "bench-limited-0123456789"
PENDING_KEY = "bench-pending-0123456789"
PATH = "/flights/v1/flights/BA1"

# One request of each outcome against ``e2e_config``.
REQUESTS = {
    "allowed": KongRequest(method="GET", path=PATH, headers={"apikey": KEY}),
    "401": KongRequest(method="GET", path=PATH),
    "403": KongRequest(method="GET", path=PATH, headers={"apikey": PENDING_KEY}),
    "429": KongRequest(method="GET", path=PATH, headers={"apikey": LIMITED_KEY}),
}
STATUS = {"allowed": 200, "401": 401, "403": 403, "429": 429}


def _app(app_id: str, key: str, package: str, status: str = "approved") -> dict[str, Any]:
    return {"id": app_id, "credentials": [{"key_hash": f"sha256:{hash_key(key)}"}],
            "registrations": [{"package": package, "status": status}]}


def bench_config(specs: Path) -> dict[str, Any]:
    """One API, one package with a limit no benchmark reaches, one application with a key."""
    return {
        "match_policy": "required",
        "specs_dir": str(specs),
        "apis": [{"name": "flights", "spec_file": "flights.yaml"}],
        "packages": [{"name": "all", "operations": [{"api": "flights"}],
                      "rate_limits": [{"limit": 10**9, "duration": "minutes"}]}],
        "applications": [_app("bench", KEY, "all")],
    }


def e2e_config(specs: Path, rate_limiting: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every outcome of REQUESTS; a consumer-mapped application makes it read the consumer,
    so an allowed request costs 5 PDK calls and a denial 4, as with the example kong.yml."""
    config = bench_config(specs)
    config["packages"].append({"name": "closed", "operations": [{"api": "flights"}],
                               "rate_limits": [{"limit": 0, "duration": "minutes"}]})
    config["applications"] += [
        _app("limited", LIMITED_KEY, "closed"),
        _app("pending", PENDING_KEY, "all", status="pending"),
        {"id": "mapped", "consumer": "mobile",
         "registrations": [{"package": "all", "status": "approved"}]},
    ]
    if rate_limiting:
        config["rate_limiting"] = rate_limiting
    return config


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Load:
    """One load run: wall and server CPU seconds, and every request's latency."""

    requests: int
    wall: float
    cpu: float
    latencies: list[float] = field(default_factory=list)

    @property
    def req_per_s(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_us(self) -> float:
        """Server CPU per request, microseconds."""
        return self.cpu / self.requests * 1e6


def drive(node: KongNode, pid: int, requests: list[KongRequest], n: int,
          expect: int | None = None) -> Load:
    """Send ``n`` requests over every worker of ``node`` at once, cycling through
    ``requests``; ``expect`` checks every status (outside the timed calls' latency)."""
    workers = len(node.workers)
    per_worker = n // workers
    lat: list[list[float]] = [[] for _ in range(workers)]
    bad: list[int] = []

    def loop(w: int) -> None:
        out, clock, send, k = lat[w], time.perf_counter, node.request, len(requests)
        for i in range(per_worker):
            t0 = clock()
            r = send(requests[i % k], worker=w)
            out.append(clock() - t0)
            if expect is not None and r.status != expect:
                bad.append(r.status)

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    if bad:
        raise AssertionError(f"expected {expect}, got {sorted(set(bad))}")
    return Load(per_worker * workers, wall, cpu, [x for w in lat for x in w])


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(mode: str, requests: int, workers: int, specs: Path) -> dict[str, float]:
    """Start a server in ``mode`` and time ``requests`` allowed requests over ``workers``."""
    with PluginServerProcess(args=("--mode", mode)) as srv:
        node = KongNode(srv.socket, e2e_config(specs), workers=workers)
        req = REQUESTS["allowed"]
        for w in range(workers):  # start instances, warm caches
            assert node.request(req, worker=w).status == 200
        load = drive(node, srv.pid, [req], requests, expect=200)
        node.close()
    return {"requests": load.requests, "req_per_s": load.req_per_s,
            "server_cpu_us_per_req": load.cpu_us,
            "p50_us": statistics.median(load.latencies) * 1e6}


def main(argv: list[str] | None = None) -> int:
    """Benchmark each mode and print one line per mode."""
    p = argparse.ArgumentParser(prog="python -m kong_ace.testing.bench")
    p.add_argument("-n", "--requests", type=int, default=2000)
    p.add_argument("-w", "--workers", type=int, default=2)
    p.add_argument("--modes", default="gevent,threading")
    p.add_argument("--specs", type=Path, default=Path(__file__).resolve().parents[3] / "specs")
    args = p.parse_args(argv)
    for mode in args.modes.split(","):
        r = run(mode, args.requests, args.workers, args.specs)
        print(f"{mode:<10} {r['requests']:.0f} requests  {r['req_per_s']:8.0f} req/s  "
              f"server CPU {r['server_cpu_us_per_req']:6.0f} us/request  "
              f"p50 {r['p50_us']:5.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
