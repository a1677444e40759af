"""The whole hot path against its floors, in one run: see main() for the options.

Run: ``.venv/bin/python tests/benchmarks/bench_all.py`` (about 3 minutes).

1. Core: ``Enforcer.match`` / ``decide`` per catalog, compile time and RSS (bench_core.py).
2. End to end through the real ``kong-ace-server`` over its Unix socket, driven by the
   Kong-protocol harness with concurrent simulated nginx workers: allowed, 401, 403, 429.
3. Floors: a no-op plugin making the same PDK calls, on our server and on stock kong-pdk 0.36
   (threading and gevent modes). Every server runs in the same rounds, interleaved, so the
   ratios come from the same minutes of this (shared, noisy) machine; figures are medians.
4. Redis ``sync_rate: 0`` against local counting.
5. The server's RSS across a long mixed run.

Not part of pytest (no timed assertions in CI); targets are printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kong_ace.testing import KongRequest, PluginServerProcess  # noqa: E402
from kong_ace.testing.bench import (  # noqa: E402
    REQUESTS,
    STATUS,
    Load,
    Workers,
    e2e_config,
    percentile,
    rss_mb,
)

SPECS = ROOT / "specs"
STOCK = [sys.executable, "-m", "kong_ace.testing.stock"]
NOOP = ("--plugin", "kong_ace.testing.noop")
EXIT = KongRequest(method="GET", path="/flights/v1/flights/BA1", headers={"x-noop-exit": "403"})


def machine() -> str:
    """nproc, CPU model and Python version."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, load {load:.2f} at start")


# --- 1. core ------------------------------------------------------------------------------

def core() -> list[dict[str, Any]]:
    """bench_core.py's measure(), one subprocess per catalog so RSS figures do not mix."""
    out = []
    from tests.benchmarks.bench_core import CATALOGS

    for name in CATALOGS:
        text = subprocess.run([sys.executable, str(ROOT / "tests/benchmarks/bench_core.py"),
                               "--one", name], capture_output=True, text=True, check=True).stdout
        out.append(json.loads(text))
    return out


# --- 2-4. end to end ----------------------------------------------------------------------

class Redis:
    """A throw-away redis-server on a free loopback port (as tests/limits/conftest.py)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.TemporaryDirectory(prefix="ace-bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self.dir.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.dir.cleanup()


class Target:
    """One server process and its simulated Kong node, with the loads it is measured on."""

    def __init__(self, stack: ExitStack, name: str, command: list[str] | None,
                 args: tuple[str, ...], config: dict[str, Any], workers: int,
                 kinds: dict[str, tuple[KongRequest, int]]) -> None:
        self.name = name
        self.srv = stack.enter_context(PluginServerProcess(command, args=args))
        self.workers = Workers(self.srv.socket, config, workers)
        stack.callback(self.workers.close)
        self.kinds = kinds
        self.loads: dict[str, list[Load]] = {k: [] for k in kinds}
        for req, status in kinds.values():  # start every worker's instance, warm caches
            self.workers.drive(self.srv.pid, [req], workers * 20, expect=status)

    def round(self, n: int) -> None:
        for kind, (req, status) in self.kinds.items():
            self.loads[kind].append(self.workers.drive(self.srv.pid, [req], n, expect=status))

    def figures(self, kind: str) -> dict[str, float]:
        loads = self.loads[kind]
        lat = [x for load in loads for x in load.latencies]
        return {"req_per_s": statistics.median(x.req_per_s for x in loads),
                "cpu_us": statistics.median(x.cpu_us for x in loads),
                "p50_us": percentile(lat, 0.5) * 1e6, "p99_us": percentile(lat, 0.99) * 1e6}


def baseline_tree(stack: ExitStack, ref: str) -> Path:
    """``plugin/`` of git ``ref`` in a temp dir (plus the no-op plugin), for before/after."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ace-baseline-")))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "plugin"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    shutil.copy(ROOT / "plugin/kong_ace/testing/noop.py", tmp / "plugin/kong_ace/testing")
    return tmp / "plugin"


def server_from(tree: Path) -> list[str]:
    """A kong-ace-server command that imports kong_ace from ``tree``."""
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); " \
           "from kong_ace.gateway.server import main; " \
           "sys.exit(main())"
    return [sys.executable, "-c", code]


def end_to_end(rounds: int, n: int, workers: int, with_redis: bool,
               baseline: str | None = None) -> dict[str, Any]:
    """Every server in the same interleaved rounds; medians per (server, request kind)."""
    ace_kinds = {k: (REQUESTS[k], STATUS[k]) for k in ("allowed", "401", "403", "429")}
    allowed = {"allowed": (REQUESTS["allowed"], 200)}
    with ExitStack() as stack:
        before = []
        if baseline:
            old = server_from(baseline_tree(stack, baseline))
            before = [
                Target(stack, f"kong-ace @ {baseline} (before)", old, (), e2e_config(SPECS),
                       workers, ace_kinds),
                Target(stack, f"no-op plugin, our server @ {baseline} (before)", old, NOOP,
                       e2e_config(SPECS), workers, allowed),
            ]
        targets = [
            Target(stack, "kong-ace (our server, gevent)", None, (), e2e_config(SPECS),
                   workers, ace_kinds),
            Target(stack, "no-op plugin, our server (gevent)", None, NOOP, e2e_config(SPECS),
                   workers, {**allowed, "exit": (EXIT, 403)}),
            Target(stack, "no-op plugin, stock kong-pdk threading", STOCK, (),
                   e2e_config(SPECS), workers, allowed),
            Target(stack, "no-op plugin, stock kong-pdk gevent", STOCK, ("-g",),
                   e2e_config(SPECS), workers, allowed),
        ]
        if with_redis:
            redis = Redis()
            stack.callback(redis.close)
            settings = {"sync_rate": 0, "redis": {"host": "127.0.0.1", "port": redis.port,
                                                  "timeout": 2000}}
            targets.append(Target(stack, "kong-ace, Redis sync_rate 0", None, (),
                                  e2e_config(SPECS, settings), workers, allowed))
        targets += before
        for _ in range(rounds):
            for t in targets:
                t.round(n)
        return {t.name: {k: t.figures(k) for k in t.kinds} for t in targets}


def memory(total: int, every: int, workers: int) -> list[tuple[int, float]]:
    """RSS of the kong-ace server every ``every`` requests of a mixed run of ``total``."""
    mix = [KongRequest(method="GET", path=f"/flights/v1/flights/F{i}",
                       headers=dict(REQUESTS[k].headers))
           for i in range(200) for k in ("allowed", "allowed", "401", "403", "429")]
    samples = []
    with PluginServerProcess() as srv:
        pool = Workers(srv.socket, e2e_config(SPECS), workers)
        pool.drive(srv.pid, mix[:5], workers * 5)
        done = 0
        samples.append((done, rss_mb(srv.pid)))
        while done < total:
            pool.drive(srv.pid, mix, every)
            done += every
            samples.append((done, rss_mb(srv.pid)))
        pool.close()
    return samples


# --- report -------------------------------------------------------------------------------

def report(args: argparse.Namespace, info: str, cores: list[dict[str, Any]],
           e2e: dict[str, Any], mem: list[tuple[int, float]], seconds: float) -> str:
    command = " ".join([".venv/bin/python tests/benchmarks/bench_all.py", *sys.argv[1:]])
    lines = [f"command: {command}", f"machine: {info}", ""]
    if cores:
        lines += ["| catalog | operations | applications | compile | +RSS | match | decide "
                  "(allowed) | decide/s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in cores:
            lines.append(f"| {r['catalog']} | {r['operations']} | {r['applications']} | "
                         f"{r['compile_s']:.2f} s | {r['rss_mb']:.0f} MB | "
                         f"{r['match_us']:.2f} µs | {r['decide_us']:.2f} µs | "
                         f"{1e6 / r['decide_us']:,.0f} |")
        lines.append("")
    if e2e:
        lines += [f"End to end: {args.workers} simulated nginx workers, {args.rounds} rounds × "
                  f"{args.requests} requests per row, interleaved; medians; server CPU from "
                  "/proc; latency = one request's full Kong-side bridge loop.", "",
                  "| server / plugin | request | PDK calls | req/s | server CPU / req | p50 | "
                  "p99 |", "|---|---|---:|---:|---:|---:|---:|"]
        # Classic mode (no ace-context table): the get_ctx probe, then the reads and writes.
        calls = {"allowed": 6, "401": 5, "403": 5, "429": 5, "exit": 5}
        for name, kinds in e2e.items():
            for kind, f in kinds.items():
                label = "denied (exit)" if kind == "exit" else kind
                lines.append(f"| {name} | {label} | {calls[kind]} | {f['req_per_s']:,.0f} | "
                             f"{f['cpu_us']:.0f} µs | {f['p50_us']:.0f} µs | "
                             f"{f['p99_us']:.0f} µs |")
        names = list(e2e)
        ace = e2e[names[0]]["allowed"]
        lines += ["", "| ratio (allowed, server CPU per request; wall time per request) | "
                  "CPU | wall | target |", "|---|---:|---:|---|"]
        targets = {names[1]: "≤ 1.25", names[2]: "≤ 0.5", names[3]: ""}
        for floor, target in targets.items():
            f = e2e[floor]["allowed"]
            lines.append(f"| kong-ace / {floor} | {ace['cpu_us'] / f['cpu_us']:.2f} | "
                         f"{f['req_per_s'] / ace['req_per_s']:.2f} | {target} |")
        redis = [n for n in names if "Redis" in n]
        if redis:
            r = e2e[redis[0]]["allowed"]
            lines += ["", f"Redis `sync_rate: 0` over local counting, allowed request: "
                      f"+{r['p50_us'] - ace['p50_us']:.0f} µs p50 latency, "
                      f"+{r['cpu_us'] - ace['cpu_us']:.0f} µs server CPU "
                      f"({r['req_per_s']:,.0f} vs {ace['req_per_s']:,.0f} req/s)."]
        lines.append("")
    if mem:
        base = mem[min(1, len(mem) - 1)][1]  # after the first slice: compiled, warmed up
        peak = max(m for _, m in mem)
        drift = (mem[-1][1] - base) / base * 100
        lines += [f"Server RSS over {mem[-1][0]:,} mixed requests (allowed, 401, 403, 429; "
                  f"200 paths): " + ", ".join(f"{n // 1000}k {m:.1f}" for n, m in mem) + " MB",
                  f"after warm-up {base:.1f} MB, peak {peak:.1f} MB, end {mem[-1][1]:.1f} MB: "
                  f"drift {drift:+.1f}% (target within 5%)", ""]
    lines.append(f"benchmark wall time {seconds:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_all.py", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=3000, help="per server, kind and round")
    p.add_argument("--workers", type=int, default=4,
                   help="simulated nginx workers: processes, each one Kong connection with one "
                        "request in flight (default: %(default)s, a loaded 2-core node)")
    p.add_argument("--memory-requests", type=int, default=200_000)
    p.add_argument("--skip", default="", help="comma list of: core,e2e,redis,memory")
    p.add_argument("--baseline", metavar="GIT_REF",
                   help="also run the servers of this commit, for before/after in one run")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if "redis" not in skip and shutil.which("redis-server") is None:
        sys.exit("redis-server is missing: run `bash .ci/setup` (or --skip redis)")
    start = time.perf_counter()
    info = machine()
    print(f"machine: {info}", flush=True)
    cores = [] if "core" in skip else core()
    print("core done", flush=True)
    e2e = ({} if "e2e" in skip else
           end_to_end(args.rounds, args.requests, args.workers, "redis" not in skip,
                      args.baseline))
    print("end to end done", flush=True)
    mem = ([] if "memory" in skip else
           memory(args.memory_requests, max(1000, args.memory_requests // 10), args.workers))
    print()
    print(report(args, info, cores, e2e, mem, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
