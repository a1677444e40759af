"""The Admin API and decK against a real DB-less Kong 3.9.1 (the facts docs/running.md states).

- A supervised plugin server (Kong has only the socket and query command): ``GET /`` is 200,
  ``deck ping`` and ``deck diff`` work; ``deck sync`` is refused (DB-less takes POST /config).
- A Kong-managed server (``start_cmd``): ``GET /`` is 500 whenever the worker that started the
  server answers it (kong/api/routes/kong.lua serialises kong.configuration, whose
  ``pluginservers[].proc`` is a cdata only in that worker: process.lua ``start_pluginservers``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.gateway.support import KEYS, outcomes_config
from tests.realkong.kong import KongNode, Upstream, ace_config

DECK = shutil.which("deck")
pytestmark = pytest.mark.skipif(DECK is None, reason="decK is missing: run `bash .ci/setup`")


def deck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DECK), *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_supervised_server_admin_root_ping_and_diff(
        mode: str, kong_node: Callable[..., KongNode], upstream: Upstream) -> None:
    node = kong_node(ace_config(upstream.url, outcomes_config()), mode=mode, server="supervised")
    assert [node.admin("GET", "/")[0] for _ in range(5)] == [200] * 5
    assert node.request("GET", "/flights/v1/flights", {"apikey": KEYS["good"]}).status == 200
    ping = deck("ping", "--kong-addr", node.admin_url)
    assert ping.returncode == 0 and "Successfully connected" in ping.stdout, ping.stderr
    state = Path(node.prefix) / "kong.yml"
    diff = deck("diff", "--kong-addr", node.admin_url, "-s", str(state))
    assert diff.returncode == 0, diff.stderr
    # decK 1.4.0 fills no defaults from Kong's schemas: it shows updates of the very config
    # Kong runs, never a create or a delete.
    assert re.search(r"Created: 0\s+Updated: \d+\s+Deleted: 0", diff.stdout), diff.stdout
    sync = deck("sync", "--kong-addr", node.admin_url, "-s", str(state))
    assert sync.returncode != 0
    assert "when not using a database" in sync.stdout + sync.stderr
    node.cleanup()


def test_managed_server_admin_root_fails_only_on_the_worker_that_started_it(
        kong_node: Callable[..., KongNode], upstream: Upstream) -> None:
    node = kong_node(ace_config(upstream.url, outcomes_config()), workers=2)
    (server,) = node.server_pids()
    starter = int(Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert starter in node.worker_pids()
    statuses: set[int] = set()
    with ThreadPoolExecutor(8) as pool:  # concurrent connections reach both workers
        for _ in range(40):
            statuses |= set(pool.map(lambda _: node.admin("GET", "/")[0], range(8)))
            if statuses == {200, 500}:
                break
    assert statuses == {200, 500}, statuses  # by chance: whichever worker answers
    failing = set(re.findall(r"\[error\] (\d+)#0: .*Cannot serialise cdata", node.error_log()))
    assert failing == {str(starter)}
    assert node.admin("GET", "/status")[0] == 200  # /status never serialises the config
    node.cleanup()
