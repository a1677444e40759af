"""Matcher benchmark: kong-ace's trie against openapi-core's path finder, and catalog scaling.

Run: .venv/bin/python tests/benchmarks/bench_match.py
Prints medians per call (microseconds) and the ratios the core issue targets.
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kong_ace import Enforcer

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".venv/octokit/node_modules/@octokit/openapi/generated/api.github.com.json"
PARAM = re.compile(r"\{[^{}]+\}")


def per_call(fn: Any, items: list[Any], rounds: int = 7) -> float:
    """Median over rounds of the mean time per call, in seconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(*item)
        samples.append((time.perf_counter() - start) / len(items))
    return statistics.median(samples)


def github_requests(enf: Enforcer, n: int, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    ops = enf.catalog.operations()
    return [(op.method, PARAM.sub(lambda _: f"v{rng.randrange(10**6)}", op.path))
            for op in rng.sample(ops, n)]


def bench_github() -> tuple[float, float]:
    import json

    from jsonschema_path import SchemaPath
    from openapi_core.templating.paths.finders import APICallPathFinder

    enf = Enforcer({"apis": [{"name": "github", "spec_file": str(GITHUB)}]})
    reqs = github_requests(enf, 200)
    ours = per_call(lambda m, p: enf.match(m, p), reqs * 50)
    finder = APICallPathFinder(SchemaPath.from_dict(json.loads(GITHUB.read_text())))
    base = "https://api.github.com"
    theirs = per_call(lambda m, p: finder.find(m.lower(), base + p), reqs, rounds=3)
    return ours, theirs


def generated(n_ops: int) -> Enforcer:
    ops = []
    per = ["GET /r{i}", "POST /r{i}", "GET /r{i}/{{id}}", "PATCH /r{i}/{{id}}",
           "DELETE /r{i}/{{id}}", "GET /r{i}/{{id}}/items", "GET /r{i}/{{id}}/items/{{item}}",
           "PUT /r{i}/{{id}}/items/{{item}}", "GET /r{i}/{{id}}/export.{{fmt}}",
           "GET /r{i}/me"]
    i = 0
    while len(ops) < n_ops:
        for t in per:
            if len(ops) < n_ops:
                method, path = t.format(i=i).split(" ")
                ops.append({"method": method, "path": "/api" + path})
        i += 1
    return Enforcer({"apis": [{"name": "gen", "operations": ops}]})


def scaling() -> tuple[float, float]:
    small, large = generated(10), generated(20_000)
    rng = random.Random(3)
    shapes = ["GET /api/r{i}/{id}/items/{id}", "GET /api/r{i}/{id}/export.json",
              "GET /api/r{i}/me", "DELETE /api/r{i}/{id}"]

    def reqs(resources: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(2000):
            m, p = rng.choice(shapes).split(" ")
            out.append((m, p.replace("{i}", str(rng.randrange(resources)))
                        .replace("{id}", str(rng.randrange(10**6)))))
        return out

    t_small = per_call(lambda m, p: small.match(m, p), reqs(1) * 10)
    t_large = per_call(lambda m, p: large.match(m, p), reqs(2000) * 10)
    assert all(large.match(m, p) for m, p in reqs(2000))
    return t_small, t_large


def main() -> int:
    ours, theirs = bench_github()
    print(f"GitHub REST spec: Enforcer.match median {ours * 1e6:.2f} us/call; "
          f"openapi-core APICallPathFinder {theirs * 1e6:.0f} us/call; "
          f"ratio {theirs / ours:.0f}x (target >= 500x)")
    small, large = scaling()
    print(f"Generated catalogs: 10 ops {small * 1e6:.2f} us/call; 20,000 ops "
          f"{large * 1e6:.2f} us/call; ratio {large / small:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
