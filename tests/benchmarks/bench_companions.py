"""Companion mode against classic mode, side by side in one run (issue #12, SPEC §9).

Run: ``.venv/bin/python tests/benchmarks/bench_companions.py`` (about a minute).

1. PDK calls per request in companion mode, for every outcome (target: 2 each), next to classic.
2. Server CPU per request through the real ``kong-ace-server``: the same config, one server per
   mode, driven in the same interleaved rounds by simulated nginx workers (processes); in
   companion mode the workers also play ace-context and ace-guard, which in Kong is Lua work
   in the nginx worker, not in the plugin server. Target: companion ≤ 0.6 × classic for an
   allowed request. The no-op plugin making the same calls is the floor of each mode.

Not part of pytest (no timed assertions in CI); targets are printed next to the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kong_ace.testing import KongNode, KongRequest, PluginServerProcess  # noqa: E402
from kong_ace.testing.bench import (  # noqa: E402
    PATH,
    REQUESTS,
    STATUS,
    Load,
    Workers,
    e2e_config,
    percentile,
)

SPECS = ROOT / "specs"
NOOP = ("--plugin", "kong_ace.testing.noop")
MOBILE = {"id": "4b1f6a52-7c0e-4d2a-9a8e-0d6f2d1e5a01", "username": "mobile"}
UNMATCHED = KongRequest(method="GET", path="/elsewhere")
TARGET_CALLS = 2
TARGET_RATIO = 0.6


def pdk_calls() -> list[tuple[str, int, int, int]]:
    """(outcome, status, classic calls, companion calls) for one request of each outcome."""
    rows = []
    with PluginServerProcess() as srv:
        nodes = {}
        for policy in ("required", "if_present"):
            config = {**e2e_config(SPECS), "match_policy": policy}
            nodes[policy] = (KongNode(srv.socket, config, consumers=[MOBILE]),
                             KongNode(srv.socket, config, consumers=[MOBILE], companions=True))
        cases = [("allowed", REQUESTS["allowed"], "required"),
                 ("allowed, mapped consumer", KongRequest(path=PATH, consumer=MOBILE,
                                                         credential={"id": "c"}), "required"),
                 ("401", REQUESTS["401"], "required"), ("403", REQUESTS["403"], "required"),
                 ("429", REQUESTS["429"], "required"), ("404", UNMATCHED, "required"),
                 ("pass-through (if_present)", UNMATCHED, "if_present")]
        for name, req, policy in cases:
            classic, companion = nodes[policy]
            a, b = classic.request(req), companion.request(req)
            assert a.status == b.status, (name, a.status, b.status)
            rows.append((name, b.status, len(a.pdk_calls), len(b.pdk_calls)))
        for pair in nodes.values():
            for node in pair:
                node.close()
    return rows


class Target:
    """One server process and its simulated workers in one mode."""

    def __init__(self, stack: ExitStack, name: str, args: tuple[str, ...], companions: bool,
                 workers: int, kinds: dict[str, tuple[KongRequest, int]]) -> None:
        self.name = name
        self.srv = stack.enter_context(PluginServerProcess(args=args))
        self.workers = Workers(self.srv.socket, e2e_config(SPECS), workers,
                               companions=companions)
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
                "p50_us": percentile(lat, 0.5) * 1e6}


def end_to_end(rounds: int, n: int, workers: int,
               ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float]]:
    """kong-ace and the no-op floor, classic and companion, in the same interleaved rounds:
    the figures, and the median of each round's companion/classic CPU ratio per kind."""
    ace = {k: (REQUESTS[k], STATUS[k]) for k in ("allowed", "401", "403", "429")}
    allowed = {"allowed": (REQUESTS["allowed"], 200)}
    with ExitStack() as stack:
        targets = [Target(stack, "kong-ace, classic", (), False, workers, ace),
                   Target(stack, "kong-ace, companion", (), True, workers, ace),
                   Target(stack, "no-op, classic (6 calls)", NOOP, False, workers, allowed),
                   Target(stack, "no-op, companion (2 calls)", NOOP, True, workers, allowed)]
        for _ in range(rounds):
            for t in targets:
                t.round(n)
        classic, companion = targets[0].loads, targets[1].loads
        paired = {k: statistics.median(b.cpu_us / a.cpu_us
                                       for a, b in zip(classic[k], companion[k], strict=True))
                  for k in classic}
        return {t.name: {k: t.figures(k) for k in t.kinds} for t in targets}, paired


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_companions.py")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=2000, help="per round and request kind")
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args(argv)

    print("PDK calls per request (companion target: 2)")
    print(f"  {'outcome':<28} {'status':>6} {'classic':>8} {'companion':>10}")
    for name, status, classic, companion in pdk_calls():
        mark = "ok" if companion == TARGET_CALLS else "MISSED"
        print(f"  {name:<28} {status:>6} {classic:>8} {companion:>10}  {mark}")

    figures, paired = end_to_end(args.rounds, args.requests, args.workers)
    print(f"\nServer CPU per request: {args.workers} simulated nginx workers, {args.rounds} "
          f"rounds x {args.requests} requests, medians")
    print(f"  {'plugin, mode':<28} {'request':>8} {'req/s':>8} {'server CPU':>11} {'p50':>8}")
    for name, kinds in figures.items():
        for kind, f in kinds.items():
            print(f"  {name:<28} {kind:>8} {f['req_per_s']:8.0f} {f['cpu_us']:8.0f} us "
                  f"{f['p50_us']:6.0f} us")
    classic = figures["kong-ace, classic"]
    companion = figures["kong-ace, companion"]
    print("\nCompanion / classic, server CPU per request (allowed target: <= 0.6); medians, "
          "and the median of the per-round ratios")
    for kind in classic:
        ratio = companion[kind]["cpu_us"] / classic[kind]["cpu_us"]
        note = ("  ok" if paired[kind] <= TARGET_RATIO else "  MISSED") if kind == "allowed" else ""
        print(f"  {kind:>8}: {ratio:.2f}x  (per round {paired[kind]:.2f}x){note}")
    floor = (figures["no-op, companion (2 calls)"]["allowed"]["cpu_us"]
             / figures["no-op, classic (6 calls)"]["allowed"]["cpu_us"])
    print(f"  no-op floor, allowed: {floor:.2f}x")
    ace_over_floor: dict[str, Any] = {
        mode: figures[f"kong-ace, {mode}"]["allowed"]["cpu_us"]
        / figures[f"no-op, {mode} ({calls} calls)"]["allowed"]["cpu_us"]
        for mode, calls in (("classic", 6), ("companion", 2))}
    print("  kong-ace over its no-op floor, allowed: "
          + ", ".join(f"{m} {r:.2f}x" for m, r in ace_over_floor.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
