"""Measure the plugin server's cost per request: ``python -m kong_ace.testing.bench``.

Drives the real server through simulated nginx workers (one process and one connection each)
and reports throughput, per-request latency and the server process's CPU time per request.
``tests/benchmarks/bench_all.py`` builds its end-to-end figures from ``Workers``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kong_ace.core.catalog import hash_key
from kong_ace.testing.kong import KongNode
from kong_ace.testing.pdk import KongRequest
from kong_ace.testing.process import PluginServerProcess

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


class Workers:
    """Simulated nginx workers as processes (as nginx's are), each with its own connection.

    Processes, not threads: one client process would serialise the workers on its GIL and the
    latencies would measure the harness, not the server.
    """

    def __init__(self, socket: str, config: dict[str, Any], count: int, *,
                 companions: bool = False) -> None:
        ctx = mp.get_context("fork")
        self.pipes = []
        self.procs = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, socket, config, companions),
                               daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def drive(self, pid: int, requests: list[KongRequest], n: int,
              expect: int | None = None) -> Load:
        """Send ``n`` requests spread over every worker at once, cycling through ``requests``;
        ``expect`` checks every status. ``pid``: the server, whose CPU time is measured."""
        per_worker = n // len(self.pipes)
        cpu0 = cpu_seconds(pid)
        for pipe in self.pipes:
            pipe.send((requests, per_worker, expect))
        results = [pipe.recv() for pipe in self.pipes]
        cpu = cpu_seconds(pid) - cpu0
        bad = sorted({b for r in results for b in r[3]})
        if bad:
            raise AssertionError(f"expected {expect}, got {bad}")
        wall = max(r[1] for r in results) - min(r[0] for r in results)
        lat = array("d")
        for r in results:
            lat.frombytes(r[2])
        return Load(per_worker * len(self.pipes), wall, cpu, lat.tolist())

    def close(self) -> None:
        """Stop the worker processes."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


def _worker(pipe: Any, socket: str, config: dict[str, Any], companions: bool = False) -> None:
    # companions: the worker also plays ace-context and ace-guard (Kong's side, not measured).
    node = KongNode(socket, config, workers=1, companions=companions)
    clock, send = time.perf_counter, node.request
    while True:
        job = pipe.recv()
        if job is None:
            break
        requests, n, expect = job
        lat = array("d")
        bad: set[int] = set()
        k = len(requests)
        start = clock()
        for i in range(n):
            t0 = clock()
            r = send(requests[i % k])
            lat.append(clock() - t0)
            if expect is not None and r.status != expect:
                bad.add(r.status)
        pipe.send((start, clock(), lat.tobytes(), bad))
    node.close()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(mode: str, requests: int, workers: int, specs: Path) -> dict[str, float]:
    """Start a server in ``mode`` and time ``requests`` allowed requests over ``workers``."""
    with PluginServerProcess(args=("--mode", mode)) as srv:
        pool = Workers(srv.socket, e2e_config(specs), workers)
        req = REQUESTS["allowed"]
        pool.drive(srv.pid, [req], workers, expect=200)  # start instances, warm caches
        load = pool.drive(srv.pid, [req], requests, expect=200)
        pool.close()
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
