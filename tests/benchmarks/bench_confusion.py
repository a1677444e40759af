"""Worst-case decision time: an 8 KB path against the slowest template shapes, vs a normal path.

Run: .venv/bin/python tests/benchmarks/bench_confusion.py [--json]
Prints medians per decision (microseconds), side by side, and the ratio to a normal request;
then what the old nested-lazy-group regex took for the same segment shape at small sizes.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kong_ace import Enforcer, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.core.confusion_catalog import WEB_KEY, confusion_config  # noqa: E402

KB8 = 8192


def per_call(fn: Any, rounds: int = 9, inner: int = 20) -> float:
    """Median over rounds of the mean time per call, in seconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def cases() -> list[tuple[str, str]]:
    seg = "/files/reports/"
    fill = KB8 - len(seg)
    return [
        ("normal: GET /files/users/7", "/files/users/7"),
        ("normal: GET /files/reports/2024-01-02.csv", "/files/reports/2024-01-02.csv"),
        ("8 KB of '-' vs {year}-{month}-{day}.csv", seg + "-" * fill),
        ("8 KB '-'*n + '.csv' (matches late)", seg + "-" * (fill - 4) + ".csv"),
        ("8 KB 'a-' repeated vs {year}-{month}-{day}.csv", seg + "a-" * (fill // 2)),
        ("8 KB of ':' vs {name}:cancel (jobs)", "/files/jobs/" + ":" * (KB8 - 12)),
        ("8 KB of 1-char segments", "/files" + "/a" * ((KB8 - 6) // 2)),
        ("8 KB of %3A escapes (two readings)", "/files/jobs/" + "%3A" * ((KB8 - 12) // 3)),
        ("8 KB of %41 escapes (Kong decodes them)", "/files/jobs/" + "%41" * ((KB8 - 12) // 3)),
        ("8 KB of lone '%'", "/files/jobs/" + "%" * (KB8 - 12)),
        ("8 KB of ';' segments (refused)", "/files/users/" + ";x" * ((KB8 - 13) // 2)),
        ("8 KB of '//' (dot removal, merged)", "/files/users" + "/" * (KB8 - 14) + "/7"),
        ("8 KB of '/./' and '/../' (dot removal)", "/files" + "/a/./../b" * ((KB8 - 6) // 9)),
    ]


def old_regex(n: int) -> float:
    # What the matcher compiled before #11 for {year}-{month}-{day}.csv.
    regex = re.compile("([^/]+?)".join(re.escape(p) for p in ["", "-", "-", ".csv"]))
    start = time.perf_counter()
    regex.fullmatch("-" * n)
    return time.perf_counter() - start


def measure() -> list[tuple[str, int, float, int]]:
    """(case, bytes, median µs per decide, status) for every case."""
    enf = Enforcer(confusion_config(match_policy="required"))
    headers = {"apikey": WEB_KEY, "host": "api.example.com"}
    rows = []
    for name, path in cases():
        req = Request("GET", path, headers=headers)
        rows.append((name, len(path), per_call(lambda r=req: enf.decide(r)) * 1e6,
                     enf.decide(req).status or 200))
    return rows


def main() -> None:
    if "--json" in sys.argv:
        print(json.dumps(measure()))
        return
    rows = measure()
    base = rows[0][2]
    print(f"{'request':<48} {'bytes':>6} {'median µs':>10} {'× normal':>9}  status")
    for name, size, us, status in rows:
        print(f"{name:<48} {size:>6} {us:>10.1f} {us / base:>9.1f}  {status}")
    worst = max(rows[2:], key=lambda r: r[2])
    print(f"\nworst 8 KB case: {worst[0]}: {worst[2]:.1f} µs = {worst[2] / base:.1f}× a normal "
          f"request ({base:.1f} µs)")
    print("\nbefore #11 (nested lazy regex, same segment shape, one fullmatch):")
    for n in (50, 100, 200, 400):
        print(f"  {n:>4} dashes: {old_regex(n) * 1e3:10.1f} ms")


if __name__ == "__main__":
    main()
