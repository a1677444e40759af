"""How long a `deck sync` takes to reach the plugin server of every Kong node in database mode.

Run: ``.venv/bin/python tests/benchmarks/bench_db_propagation.py [--changes 8]`` (about
15 s per change; needs the real Kong (tests/realkong), decK and the machine's PostgreSQL).

Two Kong 3.9.1 nodes on one fresh PostgreSQL database (Kong's defaults:
``db_update_frequency`` and ``worker_state_update_frequency`` 5 s), each with its own supervised
``kong-ace-server``. Each change is a `deck sync` to node 0 that flips the application's
registration (approved: 200, pending: 403), made after a random pause so that it lands at a
random phase of Kong's timers; both nodes are polled every 50 ms and the time from `deck sync`
returning to the first response decided by the new config is recorded per node. Figures only,
never asserted.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugin"))

from tests.realkong import deck  # noqa: E402
from tests.realkong.kong import SKIP_REASON, KongNode, Upstream, find_kong  # noqa: E402
from tests.realkong.postgres import Database, unreachable  # noqa: E402
from tests.realkong.test_database import KEY, state  # noqa: E402

POLL = 0.05
DEADLINE = 60.0


def status(node: KongNode) -> int:
    """GET /items with the application's key: 200 approved, 403 pending."""
    return node.request("GET", "/items", {"apikey": KEY}).status


def main() -> int:
    """Start the nodes, make the changes, print each delay and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=8)
    args = parser.parse_args()
    install = find_kong()
    why = SKIP_REASON if install is None else unreachable()
    if why or not deck.available():
        print(f"cannot run: {why or 'no deck on PATH'}")
        return 1
    assert install is not None
    db = Database(install).create()
    nodes: list[KongNode] = []
    try:
        with Upstream() as upstream:
            for _ in range(2):
                nodes.append(KongNode({}, server="supervised", database=db.settings(),
                                      install=install).start())
            delays: list[list[float]] = [[], []]
            registration = "approved"
            for change in range(args.changes + 1):
                time.sleep(random.uniform(0, 5))
                done = deck.sync(nodes[0].admin_url, state(upstream.url, "companion",
                                                           registration))
                if done.returncode != 0:
                    print(done.stdout, done.stderr)
                    return 1
                since = time.monotonic()
                expected = 200 if registration == "approved" else 403
                seen: dict[int, float] = {}
                while len(seen) < 2 and time.monotonic() - since < DEADLINE:
                    for i, node in enumerate(nodes):
                        if i not in seen and status(node) == expected:
                            seen[i] = time.monotonic() - since
                    time.sleep(POLL)
                if change:  # the first sync sets the start; the changes follow
                    print(f"change {change}: node 0 after {seen.get(0, -1):.2f} s, "
                          f"node 1 after {seen.get(1, -1):.2f} s", flush=True)
                    for i in (0, 1):
                        delays[i].append(seen.get(i, float("inf")))
                registration = "pending" if registration == "approved" else "approved"
            print(f"\n{time.strftime('%Y-%m-%d')} {platform.node()} ({platform.machine()}), "
                  f"{deck.deck('version').stdout.strip()}, Kong {install.version()}, "
                  f"{args.changes} changes")
            for i, name in enumerate(("node 0 (took the sync)", "node 1 (same database)")):
                d = delays[i]
                print(f"{name}: median {statistics.median(d):.2f} s, min {min(d):.2f} s, "
                      f"max {max(d):.2f} s")
    finally:
        for node in nodes:
            node.cleanup()
        db.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
