"""A live Kong 3.9.1 over time: configs ACE rejects, file-log, /metrics, `kong-ace status`.

Both modes; one Kong node per mode for the module (its plugin server keeps counting).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.support import KEYS, outcomes_config
from tests.realkong.kong import VENV_BIN, KongInstall, KongNode, Upstream, ace_config, free_port

MODES = ["companion", "classic"]
FLIGHTS = "/flights/v1/flights"
DECISION = re.compile(r'^kong_ace_decisions_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$',
                      re.M)


class Live:
    """A node with a metrics listener and a file-log, and what it takes to read them."""

    def __init__(self, node: KongNode, metrics_port: int, log_path: Path,
                 upstream: Upstream) -> None:
        self.node = node
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.log_path = log_path
        self.upstream = upstream

    def config(self, ace: dict[str, Any]) -> dict[str, Any]:
        return self.config_for(self.upstream, self.log_path, ace)

    @staticmethod
    def config_for(upstream: Upstream, log_path: Path, ace: dict[str, Any]) -> dict[str, Any]:
        """The ace config behind a global file-log writing to ``log_path``."""
        file_log = {"name": "file-log", "config": {"path": str(log_path)}}
        return ace_config(upstream.url, ace, extra_plugins=[file_log])

    def get(self, path: str = FLIGHTS, key: str | None = "good") -> int:
        headers = {"apikey": KEYS.get(key, key)} if key else {}
        return self.node.request("GET", path, headers).status

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            return resp.read().decode()  # type: ignore[no-any-return]

    def decisions(self) -> dict[tuple[str, str], float]:
        """kong_ace_decisions_total summed by (status, reason)."""
        out: dict[tuple[str, str], float] = {}
        for m in DECISION.finditer(self.metrics()):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
            key = (labels["status"], labels["reason"])
            out[key] = out.get(key, 0) + float(m["value"])
        return out

    def status(self) -> dict[str, Any]:
        """`kong-ace status --json` against the live server's socket."""
        done = subprocess.run([str(VENV_BIN / "kong-ace"), "status", "--json",
                               "--socket", str(self.node.socket)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


@pytest.fixture(scope="module", params=MODES)
def live(request: pytest.FixtureRequest, real_kong: KongInstall, upstream: Upstream,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("file-log") / "kong.json"
    config = Live.config_for(upstream, log_path, outcomes_config(log_summary=True))
    # Kong logs a managed server's output at info level (process.lua grab_logs): below the
    # default log_level (notice), so the server's own error lines need info to be seen.
    node = KongNode(config, mode=request.param, install=real_kong, conf={"log_level": "info"},
                    server_args=["--metrics-listen", f"127.0.0.1:{port}"])
    node.start()
    yield Live(node, port, log_path, upstream)
    node.cleanup()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_metrics_count_every_request_sent(live: Live) -> None:
    before = live.decisions()
    sent = {("proxied", "allowed"): 7, ("401", "no_key"): 5, ("403", "not_registered"): 3}
    for _ in range(7):
        assert live.get() == 200
    for _ in range(5):
        assert live.get(key=None) == 401
    for _ in range(3):
        assert live.get(key="unregistered") == 403
    after = live.decisions()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    assert {k: v for k, v in delta.items() if v} == sent


def test_file_log_carries_the_ace_summary(live: Live) -> None:
    start = len(live.log_lines())
    assert live.get() == 200
    assert live.get(key=None) == 401
    lines = wait_for(lambda: live.log_lines()[start:] if len(live.log_lines()) >= start + 2
                     else None, "file-log lines")
    allowed, denied = lines[-2]["ace"], lines[-1]["ace"]
    assert (allowed["outcome"], allowed["operation"], allowed["application"],
            allowed["package"]) == ("allowed", "listFlights", "good", "basic")
    assert (denied["status"], denied["reason"]) == (401, "no_key")
    assert lines[-1]["response"]["status"] == 401
    assert KEYS["good"] not in json.dumps([allowed, denied])  # the summary never holds a key


def test_status_cli_shows_the_live_server(live: Live) -> None:
    status = live.status()
    assert status["Pid"] in live.node.server_pids()
    plugin = status["Plugins"]["ace"]
    assert plugin["Instances"] and plugin["Compiled"] >= 1, plugin
    assert (plugin["Rejected"], plugin["Events"]) == ([], 0)


def test_a_config_ace_rejects_keeps_the_last_good_one(live: Live) -> None:
    bad = outcomes_config(log_summary=True)
    bad["packages"][0]["operations"].append({"api": "flights", "operation_id": "noSuchOp"})
    status, body = live.node.post_config(live.config(bad))
    assert status == 201, body  # Kong's schema accepts it; ACE does not
    assert live.get() == 200  # the first request after it: StartInstance with the bad config
    compiles = live.status()["Plugins"]["ace"]["Compiles"]
    results = [live.get() for _ in range(10)] + [live.get(key=None) for _ in range(10)]
    assert results == [200] * 10 + [401] * 10  # the last good config keeps deciding
    plugin = live.status()["Plugins"]["ace"]
    assert plugin["Compiles"] == compiles  # the failure is cached: no compile per request
    (rejected,) = plugin["Rejected"]
    assert "noSuchOp" in json.dumps(rejected), rejected
    assert re.search(r"^kong_ace_config_rejected\S* 1(\.0)?$", live.metrics(), re.M)
    # Logged once, not per request: by the server (its output, at info level in Kong's log)
    # and by Kong at error level (the plugin's kong.log.err, gateway/rejected.py).
    lines = [x for x in live.node.error_log().splitlines() if "noSuchOp" in x]
    assert len(lines) == 2, lines
    (kong_line,) = [x for x in lines if "[error]" in x]
    assert "still serving its last good config" in kong_line

    fixed = outcomes_config(log_summary=True)
    fixed["applications"][-2]["registrations"] = [{"package": "basic", "status": "approved"}]
    status, body = live.node.post_config(live.config(fixed))
    assert status == 201, body
    assert live.get(key="unregistered") == 200  # the good config replaced the last good one
