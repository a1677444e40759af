"""The cost of observability on the hot path: server CPU per allowed request, side by side.

Run: ``.venv/bin/python tests/benchmarks/bench_metrics.py`` (a few minutes).

Servers, all gevent mode, measured in the same interleaved rounds (figures are medians):
metrics off; metrics on (``--metrics-listen``); metrics on with the application label; and,
for reference, metrics off with ``log_summary: true`` (one more PDK call per request).
Target: metrics on costs at most 5 % more server CPU per allowed request than off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kong_ace.testing import PluginServerProcess  # noqa: E402
from kong_ace.testing.bench import REQUESTS, Workers, e2e_config  # noqa: E402
from tests.gateway.scrape import metrics_server, scrape  # noqa: E402

SPECS = ROOT / "specs"
TARGET = 1.05


def variants() -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, server, config) of each variant."""
    config = e2e_config(SPECS)
    return [
        ("metrics off", PluginServerProcess(), config),
        ("metrics on", metrics_server(), config),
        ("metrics on, application label", metrics_server("--metrics-applications"), config),
        ("metrics off, log_summary: true", PluginServerProcess(),
         {**config, "log_summary": True}),
    ]


def hot_path_us(n: int = 200_000) -> tuple[float, float]:
    """In-process µs per request of what metrics add: (recording, the same loop doing nothing).

    The recording is what Plugin.access does with metrics on: time decide(), then
    Recorder.decision with the allowed Decision (labels already seen).
    """
    import time

    from kong_ace.core.decision import Decision
    from kong_ace.gateway.metrics import Recorder

    rec = Recorder()
    decision = Decision(True, None, None, {}, {}, (), (), "getFlight", "bench", "all", "flights")
    clock = time.perf_counter

    def recording() -> None:
        for _ in range(n):
            start = clock()
            seconds = clock() - start
            rec.decision(decision, None, seconds, 5)

    def empty() -> None:
        for _ in range(n):
            pass

    out = []
    for fn in (recording, empty):
        runs = []
        for _ in range(5):
            t0 = time.process_time()
            fn()
            runs.append((time.process_time() - t0) / n * 1e6)
        out.append(statistics.median(runs))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    """Measure every variant in interleaved rounds and print the medians and ratios."""
    p = argparse.ArgumentParser(prog="bench_metrics.py")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--requests", type=int, default=3000, help="per variant and round")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load {load:.2f} at start; {args.rounds} rounds of "
          f"{args.requests} allowed requests per variant, {args.workers} simulated workers")
    req = REQUESTS["allowed"]
    cpu: dict[str, list[float]] = {}
    rps: dict[str, list[float]] = {}
    with ExitStack() as stack:
        runs = []
        for name, srv, config in variants():
            stack.enter_context(srv)
            pool = Workers(srv.socket, config, args.workers)
            stack.callback(pool.close)
            pool.drive(srv.pid, [req], args.workers * 100, expect=200)  # instances, warm-up
            runs.append((name, srv, pool))
            cpu[name], rps[name] = [], []
        for r in range(args.rounds):
            # Short rounds, each starting with another variant: every ratio compares the same
            # minutes of this (shared) machine, and no variant always runs first.
            for name, srv, pool in runs[r % len(runs):] + runs[:r % len(runs)]:
                result = pool.drive(srv.pid, [req], args.requests, expect=200)
                cpu[name].append(result.cpu_us)
                rps[name].append(result.req_per_s)
        for name, srv, _ in runs:  # the metrics saw every request
            port = getattr(srv, "metrics_port", None)
            if port is not None:
                seen = sum(v for (n, _), v in scrape(port).items()
                           if n == "kong_ace_decisions_total")
                total = args.workers * 100 + args.rounds * (args.requests // args.workers
                                                            * args.workers)
                assert seen == total, (name, seen, total)
    base = statistics.median(cpu["metrics off"])
    print(f"{'variant':<34} {'server CPU/request':>18} {'vs off':>8} {'paired':>8} {'req/s':>8}")
    for name in cpu:
        med = statistics.median(cpu[name])
        paired = statistics.median(a / b for a, b in zip(cpu[name], cpu["metrics off"],
                                                         strict=True))
        print(f"{name:<34} {med:15.1f} µs {med / base:7.3f}× {paired:7.3f}× "
              f"{statistics.median(rps[name]):8.0f}")
    # Paired: each round's ratio comes from the same minutes of this (shared) machine.
    on = statistics.median(a / b for a, b in zip(cpu["metrics on"], cpu["metrics off"],
                                                 strict=True))
    print(f"metrics on / off, median of the rounds' ratios: {on:.3f}× (target ≤ {TARGET:.2f}×) "
          f"{'OK' if on <= TARGET else 'ABOVE TARGET'}")
    rec_us, loop_us = hot_path_us()
    print(f"in process: recording one decision costs {rec_us - loop_us:.2f} µs "
          f"({(rec_us - loop_us) / base * 100:.1f} % of the server CPU per request with "
          "metrics off)")
    print("per-round CPU µs/request:")
    for name, values in cpu.items():
        print(f"  {name:<34} " + " ".join(f"{v:6.1f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
