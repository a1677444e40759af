"""Database mode: two real Kong nodes on one PostgreSQL database, configured with `deck sync`.

- A config change reaches the plugin server of every node. Kong rebuilds its plugins iterator
  on a timer (kong/runloop/handler.lua ``init_worker``: ``plugins-iterator-rebuild`` every
  ``worker_state_update_frequency``, 5 s), and a node other than the one whose Admin API took
  the change first hears of it by polling the database's cluster events (``db_update_frequency``,
  5 s): the delays are measured and printed.
- A config Kong's schema accepts but ACE rejects, stored in the database, leaves running nodes
  on their last good config (Kong's error log says so once); a node that starts fresh with it
  answers 500 to everything (fail closed), and says so in `kong-ace status` (exit 2), in the
  metrics, and in one error line of Kong's log, not one per request. `kong-ace check` before
  the sync is the guard.

PostgreSQL: the machine's (tests/realkong/postgres.py); skipped with the reason when it is not
reachable, a failure when CI or KONG_ACE_CI (set by .ci/run) is set.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway.scrape import delta, labels, scrape
from tests.ops.helpers import as_json, kong_ace
from tests.realkong import deck
from tests.realkong.kong import COMPANIONS, KongInstall, KongNode, Upstream, ace_config, free_port
from tests.realkong.postgres import Database, unreachable

KEY = "ace_database_0123456789abcdef"
# Kong's defaults: db_update_frequency 5 s + worker_state_update_frequency 5 s, then the first
# request starts the new instance. A liveness deadline, not a speed target (those are printed).
PROPAGATION_DEADLINE = 30.0
STILL_SERVING = "still serving its last good config"
NO_GOOD = "no last good config"


def state(upstream_url: str, mode: str, registration: str = "approved",
          api: str = "items") -> dict[str, Any]:
    """A decK state: the upstream, a catch-all route, ace (+ the companions in companion mode).

    ``api`` other than ``items`` names an API that does not exist: Kong's schema accepts it,
    ACE rejects it (``packages[0].operations[0]: unknown API``).
    """
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    ace = {
        "match_policy": "required",
        "apis": [{"name": "items", "operations": [{"method": "GET", "path": "/items"}]}],
        "packages": [{"name": "basic", "operations": [{"api": api}]}],
        "applications": [{"id": "app", "credentials": [{"key_hash": f"sha256:{digest}"}],
                          "registrations": [{"package": "basic", "status": registration}]}],
    }
    config = ace_config(upstream_url, ace)
    if mode == "companion":
        config["plugins"] += COMPANIONS
    return config


@pytest.fixture(scope="module")
def database(real_kong: KongInstall) -> Iterator[Database]:
    """A database of this session's own, bootstrapped, dropped afterwards."""
    why = unreachable() or (None if deck.available() else "no deck on PATH (bash .ci/setup)")
    if why:
        if os.environ.get("CI") or os.environ.get("KONG_ACE_CI"):
            pytest.fail(f"CI (.ci/run) and the database-mode tests would skip: {why}")
        pytest.skip(why)
    db = Database(real_kong).create()
    yield db
    db.drop()


class DBNode:
    """A KongNode on the database, its supervised server's metrics port beside it."""

    def __init__(self, start: Callable[..., KongNode], database: Database) -> None:
        self.metrics_port = free_port()
        # decK needs GET / to answer 200: a supervised server (SPEC §10).
        self.node = start({}, server="supervised", database=database.settings(),
                          server_args=["--metrics-listen", f"127.0.0.1:{self.metrics_port}"])

    def get(self) -> int:
        """The status of GET /items with the application's key."""
        return self.node.request("GET", "/items", {"apikey": KEY}).status

    def status(self, *args: str) -> Any:
        """`kong-ace status` against this node's plugin server."""
        return kong_ace("status", "--socket", str(self.node.socket), *args)


@pytest.fixture(scope="module")
def nodes(kong_node: Callable[..., KongNode], database: Database) -> list[DBNode]:
    """Two running nodes on the same database."""
    return [DBNode(kong_node, database), DBNode(kong_node, database)]


def sync(node: DBNode, config: dict[str, Any]) -> float:
    """`deck sync` through ``node``'s Admin API; the monotonic time it returned."""
    done = deck.sync(node.node.admin_url, config)
    assert done.returncode == 0, done.stdout + done.stderr
    return time.monotonic()


def wait_for(nodes: list[DBNode], expected: int, since: float) -> dict[int, float]:
    """Poll every node until it answers ``expected``: seconds after ``since``, per node."""
    seen: dict[int, float] = {}
    while len(seen) < len(nodes):
        for i, n in enumerate(nodes):
            if i not in seen and n.get() == expected:
                seen[i] = time.monotonic() - since
        assert time.monotonic() - since < PROPAGATION_DEADLINE, f"only nodes {seen} changed"
        time.sleep(0.05)
    return seen


def test_a_deck_sync_reaches_the_plugin_server_of_every_node(
        nodes: list[DBNode], upstream: Upstream) -> None:
    version = deck.deck("version").stdout.strip()
    wait_for(nodes, 200, sync(nodes[0], state(upstream.url, "companion")))
    measured = []
    for mode, registration, expected in (("companion", "pending", 403),
                                         ("classic", "approved", 200)):
        delays = wait_for(nodes, expected,
                          sync(nodes[0], state(upstream.url, mode, registration)))
        measured.append(delays)
        print(f"\n{version}: sync to node 0 ({mode}, registration {registration}): node 0 "
              f"after {delays[0]:.2f} s, node 1 after {delays[1]:.2f} s")
    # Every node's plugin server runs an instance of the one ace plugin entity.
    status, plugins = nodes[0].node.admin("GET", "/plugins?size=100")
    assert status == 200
    (ace_id,) = [p["id"] for p in plugins["data"] if p["name"] == "ace"]
    for n in nodes:
        proc = n.status("--json")
        assert proc.returncode == 0, proc.stderr
        instances = as_json(proc)["Plugins"]["ace"]["Instances"]
        assert instances and {i["PluginId"] for i in instances} == {ace_id}
    # Classic mode now: decK removed the companions, so no verdict table and the plugin reads
    # through the PDK; a forged identity header is still replaced.
    upstream.clear()
    assert nodes[1].node.request("GET", "/items", {"apikey": KEY,
                                                   "X-ACE-Application-ID": "forged"}).status == 200
    (seen,) = upstream.received
    assert [v for k, v in seen["headers"] if k.lower() == "x-ace-application-id"] == ["app"]


def request_ids(log: str, marker: str) -> set[str]:
    """The request ids of the error-level lines of Kong's log that contain ``marker``."""
    lines = [x for x in log.splitlines() if marker in x and "[error]" in x]
    return {m.group(1) for x in lines for m in [re.search(r'request_id: "(\w+)"', x)] if m}


def error_lines(log: str, marker: str) -> list[str]:
    """The error-level lines of Kong's log that contain ``marker``."""
    return [x for x in log.splitlines() if marker in x and "[error]" in x]


def test_a_rejected_config_keeps_the_last_good_one_and_a_fresh_node_fails_closed(
        nodes: list[DBNode], kong_node: Callable[..., KongNode], database: Database,
        upstream: Upstream, tmp_path: Path) -> None:
    good = state(upstream.url, "companion")
    wait_for(nodes, 200, sync(nodes[0], good))
    bad = state(upstream.url, "companion", api="nosuch")

    # The guard: `kong-ace check` refuses the file before it reaches the database.
    (tmp_path / "kong.yml").write_text(yaml.safe_dump(bad, sort_keys=False))
    check = kong_ace("check", str(tmp_path / "kong.yml"))
    assert check.returncode == 2 and "unknown API 'nosuch'" in check.stderr, check.stderr

    # Without it, Kong's schema takes the config: it is in the database now.
    since = sync(nodes[0], bad)
    for n in nodes:  # requests keep deciding with the last good config while it spreads
        while not as_json(n.status("--json"))["Plugins"]["ace"].get("Rejected"):
            assert n.get() == 200
            assert time.monotonic() - since < PROPAGATION_DEADLINE
            time.sleep(0.05)
    for n in nodes:
        assert [n.get() for _ in range(10)] == [200] * 10
        proc = n.status()
        assert proc.returncode == 0, proc.stderr
        assert re.search(rf"^WARNING: plugin \S+: config \w+ rejected \(.*unknown API 'nosuch'"
                         rf".*\); {STILL_SERVING} \w+$", proc.stdout, re.M), proc.stdout
        rejected = {k: v for k, v in scrape(n.metrics_port).items()
                    if k[0] == "kong_ace_config_rejected"}
        (sample,) = rejected
        assert dict(sample[1])["serving"] and rejected[sample] == 1
        assert len(error_lines(n.node.error_log(), STILL_SERVING)) == 1  # once, not per request

    # A node that starts fresh with it (new prefix, new plugin server) has nothing good.
    fresh = DBNode(kong_node, database)
    before = scrape(fresh.metrics_port)
    upstream.clear()
    answers = [fresh.node.request("GET", "/items", {"apikey": KEY}) for _ in range(20)]
    assert [a.status for a in answers] == [500] * 20
    assert all(a.json["message"] == "An unexpected error occurred" for a in answers)
    assert upstream.received == []
    log = fresh.node.error_log()
    # One request's error (Kong writes it as two lines: plugin.lua's `starting instance` and
    # the Lua error), not twenty.
    assert len(request_ids(log, NO_GOOD)) == 1, error_lines(log, NO_GOOD)
    assert "unknown API 'nosuch'" in error_lines(log, NO_GOOD)[0]
    proc = fresh.status()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(r"^FAIL CLOSED: plugin \S+: config \w+ rejected .* no last good config: "
                     r"Kong answers 500 to every request", proc.stdout, re.M), proc.stdout
    after = scrape(fresh.metrics_port)
    assert delta(before, after, "kong_ace_decisions_total") == Counter({
        labels(status="500", reason="config_rejected", package="", api="",
               operation=""): 19})
    rejected = {k: v for k, v in after.items() if k[0] == "kong_ace_config_rejected"}
    assert [dict(k[1])["serving"] for k in rejected] == [""]

    # Fixed: a good config reaches the fresh node too, and it serves again.
    delays = wait_for([*nodes, fresh], 200, sync(nodes[0], good))
    print(f"\nfixed config: node 0 after {delays[0]:.2f} s, node 1 after {delays[1]:.2f} s, "
          f"the fresh node after {delays[2]:.2f} s")
    assert fresh.status().returncode == 0
    fresh.node.cleanup()
