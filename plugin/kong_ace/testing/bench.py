"""Measure the plugin server's cost per request: ``python -m kong_ace.testing.bench``.

Sends allowed requests (5 PDK calls each) through simulated nginx workers, one thread per
worker, and reports throughput and the server process's CPU time per request.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..catalog import hash_key
from .kong import KongNode
from .pdk import KongRequest
from .process import PluginServerProcess

KEY = "bench-key-0123456789"


def bench_config(specs: Path) -> dict[str, Any]:
    """One API, one package with a limit no benchmark reaches, one application with a key."""
    return {
        "match_policy": "required",
        "specs_dir": str(specs),
        "apis": [{"name": "flights", "spec_file": "flights.yaml"}],
        "packages": [{"name": "all", "operations": [{"api": "flights"}],
                      "rate_limits": [{"limit": 10**9, "duration": "minutes"}]}],
        "applications": [{"id": "bench", "credentials": [{"key_hash": f"sha256:{hash_key(KEY)}"}],
                          "registrations": [{"package": "all", "status": "approved"}]}],
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(mode: str, requests: int, workers: int, specs: Path) -> dict[str, float]:
    """Start a server in ``mode`` and time ``requests`` requests over ``workers`` workers."""
    with PluginServerProcess(args=("--mode", mode)) as srv:
        node = KongNode(srv.socket, bench_config(specs), workers=workers)
        req = KongRequest(method="GET", path="/flights/v1/flights/BA1", headers={"apikey": KEY})
        for w in range(workers):  # start instances, warm caches
            assert node.request(req, worker=w).status == 200
        per_worker = requests // workers

        def loop(w: int) -> None:
            for _ in range(per_worker):
                node.request(req, worker=w)

        cpu0, t0 = cpu_seconds(srv.pid), time.perf_counter()
        threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, cpu = time.perf_counter() - t0, cpu_seconds(srv.pid) - cpu0
        node.close()
    done = per_worker * workers
    return {"requests": done, "req_per_s": done / wall, "server_cpu_us_per_req": cpu / done * 1e6}


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
              f"server CPU {r['server_cpu_us_per_req']:6.0f} us/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
