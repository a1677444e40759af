"""Faults of the plugin server under load, on the real Kong 3.9.1 (SPEC §6, §9, §10).

Four clients send requests ACE refuses (401: no key) through 2 nginx workers while the plugin
server is killed, stopped, restarted or reloaded. What reached the upstream is a refused
request let through. Companion mode must let none through, ever, and a graceful restart
(SIGTERM with respawn, SIGHUP of the supervisor, ``kong reload``) must not even cost a 503.
Classic mode fails open by Kong's design (mp_rpc.lua): its counts are printed, and graceful
restarts must not let any through either.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.gateway.support import KEYS, outcomes_config
from tests.realkong.kong import VENV_BIN, KongNode, Upstream, ace_config

CLIENTS = 4
WORKERS = 2
REFUSED = "/flights/v1/flights"  # no key: 401 from ACE
SETTLE = 1.5  # seconds of load after a fault once the new server serves
PLUGIN_ID = "5e1f0c2a-7d4b-4f0e-9a51-3c8b2d6e9f10"


@dataclass
class Tally:
    """What the clients got during one fault."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    passed: int = 0  # refused requests that reached the upstream
    logged: Counter[str] = field(default_factory=Counter)  # Kong's error lines

    def line(self) -> str:
        return (f"{sum(self.statuses.values())} requests, {self.passed} reached the upstream, "
                f"statuses {dict(sorted(self.statuses.items()))}, {self.errors} client errors"
                + "".join(f"\n    Kong logged {n} x {m}" for m, n in self.logged.most_common(6)))


class Load:
    """CLIENTS threads sending refused requests until stopped; counted per phase."""

    def __init__(self, node: KongNode, upstream: Upstream) -> None:
        self.node = node
        self.upstream = upstream
        self.tally = Tally()
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(CLIENTS)]

    def _client(self) -> None:
        while self.running.is_set():
            try:
                status = self.node.request("GET", REFUSED, timeout=30).status
            except OSError:
                with self.lock:
                    self.tally.errors += 1
                continue
            with self.lock:
                self.tally.statuses[status] += 1

    def __enter__(self) -> Load:
        self.upstream.clear()
        self.running.set()
        for t in self.threads:
            t.start()
        return self

    def count(self) -> int:
        with self.lock:
            return sum(self.tally.statuses.values())

    def wait_requests(self, n: int, timeout: float = 60) -> None:
        """Until ``n`` more requests were answered (the load runs)."""
        target = self.count() + n
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.01)

    def __exit__(self, *_: Any) -> None:
        self.running.clear()
        for t in self.threads:
            t.join(timeout=60)
        self.tally.passed = len(self.upstream.received)


def wait(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def serving_pid(node: KongNode) -> int:
    """The pid of the server process that answers a fresh connection now."""
    from kong_ace.testing import KongRPC

    rpc = KongRPC(str(node.socket), timeout=10)
    try:
        return int(rpc.call("plugin.GetStatus")["Pid"])
    finally:
        rpc.close()


def fresh_serving(node: KongNode, old: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return serving_pid(node) != old
        except Exception:  # noqa: BLE001 - nobody listening yet
            return False
    return check


def gone(pid: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True
    return check


def settled(node: KongNode, processes: int) -> None:
    """Until only the serving processes remain (a draining one has let Kong go)."""
    wait(lambda: len(node.server_pids()) == processes, "the old server to drain and exit")


def run_fault(node: KongNode, upstream: Upstream, fault: Callable[[], None],
              settle: Callable[[], None]) -> Tally:
    seen = len(node.error_log())
    with Load(node, upstream) as load:
        load.wait_requests(40)
        fault()
        settle()
        load.wait_requests(40)
        time.sleep(SETTLE)
    load.tally.logged = kong_errors(node.error_log()[seen:])
    return load.tally


def kong_errors(text: str) -> Counter[str]:
    """Kong's error and warning lines about the plugin server, by message."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if ("[error]" in line or "[warn]" in line or "[crit]" in line) and (
                "mp_rpc" in line or "ace" in line):
            message = line.split("#0: ", 1)[-1].split(", client")[0]
            message = re.sub(r"^\*\d+ |#\d+|\d{4,}|/tmp/\S+/", "", message)
            found[message[:160]] += 1
    return found


def report(mode: str, fault: str, tally: Tally) -> None:
    print(f"\n[real Kong 3.9.1, {WORKERS} workers, {CLIENTS} clients] {fault} ({mode}): "
          f"{tally.line()}")


def conclude(node: KongNode, mode: str, faults: list[tuple[str, Tally, bool]]) -> None:
    """Stop the node, print every fault's counts, then check each (graceful or not)."""
    node.cleanup()
    for name, tally, _ in faults:
        report(mode, name, tally)
    for _, tally, graceful in faults:
        check(mode, tally, graceful=graceful)


def check(mode: str, tally: Tally, *, graceful: bool) -> None:
    assert tally.errors == 0
    if mode == "companion":
        assert tally.passed == 0
        assert set(tally.statuses) <= {401, 500, 503}, tally.statuses
    else:  # what fails open reaches the upstream and nothing else does
        assert set(tally.statuses) <= {200, 401, 500}, tally.statuses
        assert tally.passed == tally.statuses[200]
    if graceful:
        assert tally.passed == 0
        assert set(tally.statuses) == {401}, tally.statuses  # not one 503 nor 500


def kill(sig: signal.Signals) -> Callable[[int], None]:
    return lambda pid: os.kill(pid, sig)


def restart(node: KongNode, upstream: Upstream, send: Callable[[int], None], processes: int,
            what: str) -> Tally:
    """Under load, ``send(pid of the serving process)``; on until a new one serves and only
    ``processes`` server processes are left (the old one has let Kong go)."""
    old = serving_pid(node)
    return run_fault(node, upstream, lambda: send(old),
                     lambda: (wait(fresh_serving(node, old), what), settled(node, processes)))


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_kong_managed_server_sigterm_sigkill_and_reload(
        mode: str, kong_node: Callable[..., KongNode], upstream: Upstream) -> None:
    node = kong_node(ace_config(upstream.url, outcomes_config()), mode=mode, workers=WORKERS)
    sigterm = restart(node, upstream, kill(signal.SIGTERM), 1, "Kong's respawn")

    second = serving_pid(node)
    before = set(node.server_pids())

    def old_server_stopped() -> None:
        # The new workers' worker 0 starts a new server; the old worker 0 stops the old one
        # with SIGTERM when it exits (about 10 s later): keep the load on until it is gone.
        wait(fresh_serving(node, second), "the new server")
        wait(lambda: all(gone(p)() for p in before), "the old server to stop", timeout=60)
        settled(node, 1)

    reloaded = run_fault(node, upstream, node.reload, old_server_stopped)
    killed = restart(node, upstream, kill(signal.SIGKILL), 1, "Kong's respawn")
    assert "Traceback" not in node.error_log()
    conclude(node, mode, [("SIGTERM, Kong respawns", sigterm, True),
                          ("kong reload", reloaded, True),
                          ("SIGKILL, Kong respawns", killed, False)])


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_supervised_server_sighup_and_sigkill_of_the_child(
        mode: str, kong_node: Callable[..., KongNode], upstream: Upstream) -> None:
    node = kong_node(ace_config(upstream.url, outcomes_config()), mode=mode, workers=WORKERS,
                     server="supervised")
    supervisor = node._supervisor
    assert supervisor is not None
    hup = restart(node, upstream, lambda _: supervisor.send_signal(signal.SIGHUP), 2,
                  "the new child")
    term = restart(node, upstream, kill(signal.SIGTERM), 2, "the supervisor's restart")
    killed = restart(node, upstream, kill(signal.SIGKILL), 2, "the supervisor's restart")
    conclude(node, mode, [("SIGHUP of the supervisor", hup, True),
                          ("SIGTERM of the supervised child", term, True),
                          ("SIGKILL of the supervised child", killed, False)])


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_a_decision_slower_than_kongs_timeout(
        mode: str, kong_node: Callable[..., KongNode], upstream: Upstream) -> None:
    """Kong waits lua_socket_read_timeout (60 s by default, 1 s here) for a Step, then logs
    the timeout and lets the request go on (mp_rpc.lua): ace-guard answers 503 instead."""
    faulty = "kong_ace.testing.faulty"
    node = kong_node(
        ace_config(upstream.url, {"fault": "hang"}), mode=mode, workers=1,
        server_args=["--plugin", faulty, "--event-timeout", "30"],
        conf={"pluginserver_ace_query_cmd": f"{VENV_BIN / 'kong-ace-server'} --dump "
                                            f"--plugin {faulty}",
              "nginx_http_lua_socket_read_timeout": "1s"})
    upstream.clear()
    statuses = Counter(node.request("GET", REFUSED).status for _ in range(3))
    passed = len(upstream.received)
    print(f"\n[real Kong 3.9.1] decision slower than Kong's 1 s timeout ({mode}): 3 requests, "
          f"{passed} reached the upstream, statuses {dict(statuses)}")
    assert "[ace] no data" in node.error_log()  # a read timeout reads as "no data" in Kong
    node.cleanup()
    if mode == "companion":
        assert passed == 0 and statuses == {503: 3}
    else:
        assert passed == 3  # Kong's own fail-open: documented (docs/running.md)


def test_the_last_good_config_survives_a_restart_of_the_server(
        kong_node: Callable[..., KongNode], upstream: Upstream) -> None:
    """Kong holds a config ACE rejects; the server restarts: still the last good config."""
    good = ace_config(upstream.url, outcomes_config())
    good["plugins"][0]["id"] = PLUGIN_ID  # the same plugin entity in both configs
    node = kong_node(good, mode="companion", workers=1)
    key = {"apikey": KEYS["good"]}
    assert node.request("GET", REFUSED, key).status == 200
    rejected = ace_config(upstream.url, outcomes_config())
    rejected["plugins"][0]["id"] = PLUGIN_ID
    rejected["plugins"][0]["config"]["packages"][0]["operations"].append({"api": "nope"})
    status, body = node.post_config(rejected)
    assert status == 201, body  # Kong's schema accepts it; ACE does not
    assert node.request("GET", REFUSED, key).status == 200  # the last good one decides
    old = serving_pid(node)
    os.kill(old, signal.SIGKILL)
    wait(fresh_serving(node, old), "Kong's respawn")
    # Before: the new process had no last good config: StartInstance failed, every request 500.
    answers = Counter(node.request("GET", REFUSED, key).status for _ in range(5))
    assert answers == {200: 5}, answers
    assert node.request("GET", REFUSED).status == 401
    from kong_ace.testing import KongRPC

    rpc = KongRPC(str(node.socket), timeout=10)
    (rejection,) = rpc.call("plugin.GetStatus")["Plugins"]["ace"]["Rejected"]
    rpc.close()
    assert rejection["PluginId"] == PLUGIN_ID and rejection["Serving"]  # status says so
    files = list((node.prefix / "kong-ace-last-good").iterdir())
    assert [oct(f.stat().st_mode & 0o777) for f in files] == ["0o600"]
    node.cleanup()
