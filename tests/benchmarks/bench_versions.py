"""decide() of this checkout against a base commit, interleaved in one run (paired ratios).

Run: .venv/bin/python tests/benchmarks/bench_versions.py [--base REV] [--rounds N]
The base commit's ``plugin/`` is exported with ``git archive`` into a temporary folder and put
first on PYTHONPATH; the benchmark scripts themselves are this checkout's. Each round runs
bench_core.py (every catalog, one subprocess each) and bench_confusion.py for the base and for
this checkout, alternating which goes first; medians over rounds and the median of the
per-round ratios are printed (this checkout / base: below 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "benchmarks"
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_core import CATALOGS  # noqa: E402


def export(rev: str, into: str) -> str:
    """The base commit's plugin/ folder under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "plugin"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return os.path.join(into, "plugin")


def run(script: str, args: list[str], pythonpath: str | None) -> Any:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                         text=True, check=True, env=env, cwd=ROOT).stdout
    return json.loads(out)


def one_round(versions: dict[str, str | None]) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {v: {} for v in versions}
    for version, path in versions.items():
        for name in CATALOGS:
            r = run("bench_core.py", ["--one", name], path)
            figures[version][f"decide: {name}"] = r["decide_us"]
            if "new_path_us" in r:  # (older checkouts' bench_core: run with this one's anyway)
                figures[version][f"decide, new paths: {name}"] = r["new_path_us"]
        for name, _size, us, _status in run("bench_confusion.py", ["--json"], path):
            figures[version][f"confusion: {name}"] = us
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kong-ace-bench-") as tmp:
        base = export(args.base, tmp)
        rounds = []
        for i in range(args.rounds):
            order = {"base": base, "this": None} if i % 2 == 0 else {"this": None, "base": base}
            rounds.append(one_round(order))
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
    keys = list(rounds[0]["base"])
    print(f"base {args.base}, {args.rounds} interleaved rounds; µs per decide, medians")
    print(f"{'case':72} {'base':>9} {'this':>9} {'this/base':>9}")
    for key in keys:
        b = statistics.median(r["base"][key] for r in rounds)
        t = statistics.median(r["this"][key] for r in rounds)
        ratio = statistics.median(r["this"][key] / r["base"][key] for r in rounds)
        print(f"{key[:72]:72} {b:>9.2f} {t:>9.2f} {ratio:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
