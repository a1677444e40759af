"""Issue #12's faults: the plugin server SIGKILLed and respawned (twice), SIGTERMed, and a
config reload whose old server is stopped under load, with clients sending only requests ACE
must refuse. Every request is counted. With the Lua companions, none reaches the upstream
(ace-guard answers 503 whenever no verdict was written); in classic mode Kong's fail-open is
measured and printed (SPEC §6), never asserted away.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from kong_ace.testing import KongNode, KongRequest, PluginServerProcess, Result

from .catalog import KEYS, hardening_config
from .conftest import scale

# Requests ACE must refuse: no key, an unknown key, a revoked key, a pending registration.
REFUSED = [
    KongRequest(path="/flights/v1/flights"),
    KongRequest(path="/flights/v1/flights", headers={"apikey": "not-a-key"}),
    KongRequest(path="/flights/v1/flights", headers={"apikey": KEYS["revoked"]}),
    KongRequest(path="/hand/v1/a-b", headers={"apikey": KEYS["pending"]}),
]
ALLOWED = KongRequest(path="/flights/v1/flights", headers={"apikey": KEYS["basic"]})
UNAVAILABLE = {"message": "access control unavailable"}
UNEXPECTED = {"message": "An unexpected error occurred"}
SERVER_ARGS = ("--event-timeout", "10")


@dataclass
class Server:
    """The plugin server Kong runs: killed, stopped and respawned on the same socket."""

    current: PluginServerProcess
    old: list[PluginServerProcess] = field(default_factory=list)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the running server (by its pid) and wait until it is gone."""
        proc = self.current.proc
        assert proc is not None
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        self.old.append(self.current)

    def respawn(self) -> None:
        """What Kong's process.lua does after the server exits: start it again."""
        self.current = PluginServerProcess(prefix=self.current.prefix, args=SERVER_ARGS).start()

    def stop(self) -> None:
        for s in [self.current, *reversed(self.old)]:
            s.stop()


def load(node: KongNode, per_worker: int, chaos: Callable[[Callable[[], int]], None],
         ) -> list[Result]:
    """Every worker sends ``per_worker`` refused requests from its own thread; ``chaos``
    runs beside them with a count of the requests answered so far."""
    results: list[Result] = []
    lock = threading.Lock()
    crashed: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(per_worker):
                r = node.request(REFUSED[(i + w) % len(REFUSED)], worker=w)
                with lock:
                    results.append(r)
        except BaseException as exc:  # noqa: BLE001
            crashed.append(exc)

    def done() -> int:
        with lock:
            return len(results)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(len(node.workers))]
    for t in threads:
        t.start()
    try:
        chaos(done)
    finally:
        for t in threads:
            t.join(timeout=300)
    assert not any(t.is_alive() for t in threads) and not crashed, crashed
    assert len(results) == per_worker * len(node.workers)  # none lost, none answered twice
    return results


def until(done: Callable[[], int], count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while done() < count:
        assert time.monotonic() < deadline, "load stalled"
        time.sleep(0.002)  # polling the request count, not waiting for time


def sigkill_twice(server: Server, total: int) -> Callable[[Callable[[], int]], None]:
    """SIGKILL, respawn after 10 % of the load; SIGKILL again right after the respawn."""
    def chaos(done: Callable[[], int]) -> None:
        until(done, total // 4)
        server.signal(signal.SIGKILL)
        until(done, total // 4 + total // 10)
        server.respawn()
        server.signal(signal.SIGKILL)  # a second crash right after the respawn
        until(done, total // 2 + total // 10)
        server.respawn()
    return chaos


def sigterm(server: Server, total: int) -> Callable[[Callable[[], int]], None]:
    """SIGTERM mid-load (events in flight), respawn after 10 % of the load."""
    def chaos(done: Callable[[], int]) -> None:
        until(done, total // 3)
        server.signal(signal.SIGTERM)
        until(done, total // 3 + total // 10)
        server.respawn()
    return chaos


def reload(server: Server, node: KongNode, total: int) -> Callable[[Callable[[], int]], None]:
    """`kong reload`: the workers move to a new config at their own time, then the server is
    stopped with SIGTERM under load and started again."""
    def chaos(done: Callable[[], int]) -> None:
        until(done, total // 5)
        changed = hardening_config()
        changed["packages"][0]["description"] = "reloaded"
        node.configure(changed, workers=[0, 1])
        until(done, total // 3)
        node.configure(changed)
        server.signal(signal.SIGTERM)
        until(done, total // 3 + total // 10)
        server.respawn()
    return chaos


FAULTS = ["sigkill_twice", "sigterm", "reload"]


@pytest.mark.parametrize("mode", ["companion", "classic"])
@pytest.mark.parametrize("fault", FAULTS)
def test_no_refused_request_reaches_the_upstream_in_companion_mode(fault: str,
                                                                   mode: str) -> None:
    workers, per = 4, scale(150, 1500)
    total = workers * per
    server = Server(PluginServerProcess(args=SERVER_ARGS).start())
    node = KongNode(server.current.socket, hardening_config(), workers=workers,
                    companions=mode == "companion")
    try:
        chaos = {"sigkill_twice": sigkill_twice(server, total), "sigterm": sigterm(server, total),
                 "reload": reload(server, node, total)}[fault]
        results = load(node, per, chaos)
        after = [node.request(ALLOWED, worker=w) for w in range(workers)]
        log = server.current.log
        stopped_logs = [s.log for s in server.old]
    finally:
        node.close()
        server.stop()
    leaked = [r for r in results if r.proxied]
    statuses = Counter(r.status for r in results)
    failed = [r for r in results if r.errors]
    print(f"\n{fault} ({mode}): {len(results)} refused-by-ACE requests, {len(leaked)} reached "
          f"the upstream, {len(failed)} hit an RPC failure; statuses {dict(statuses)}")
    # The test would prove nothing if the fault went unnoticed. A SIGTERMed server drains
    # (SPEC §10 lifecycle): it may answer every event in flight, and then nothing fails. Its
    # log says it stopped, whether every connection let go in time or the drain's bound ended it
    # with idle connections still open (seen under load; gateway/server.py `_drain`).
    drained = any("stopping" in text for text in stopped_logs)
    assert failed or (fault != "sigkill_twice" and drained), "the fault was not felt"
    assert all(r.status == 200 for r in after), [(r.status, r.errors) for r in after]
    assert "Traceback" not in log
    if mode == "companion":
        assert leaked == []
        assert set(statuses) <= {401, 403, 500, 503}, statuses
        # A request that met a dead or stopping server got the guard's 503 (or Kong's 500 when
        # StartInstance itself failed), unless ACE's verdict was written before the failure.
        for r in failed:
            assert ((r.status, r.body) in ((503, UNAVAILABLE), (500, UNEXPECTED))
                    or "kong.nginx.set_ctx" in r.pdk_calls), (r.status, r.pdk_calls, r.errors)
        if fault == "sigkill_twice":
            assert statuses[503] > 0  # a dead server: only ace-guard's answer stands
    else:
        # Classic mode is Kong's own fail-open: what leaked is exactly what met an RPC failure.
        assert all(r.errors for r in leaked)


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_a_slow_decision_fails_closed_only_with_the_companions(mode: str) -> None:
    """Kong waits 60 s for a Step, then logs the timeout and lets the request through (SPEC
    §6); here Kong's timeout is 0.5 s and the handler (kong_ace.testing.faulty) hangs."""
    args = ("--plugin", "kong_ace.testing.faulty", "--event-timeout", "30")
    with PluginServerProcess(args=args) as srv:
        node = KongNode(srv.socket, {"fault": "hang"}, workers=1,
                        companions=mode == "companion")
        node.workers[0].rpc.timeout = 0.5
        r = node.request(KongRequest(path="/flights/v1/flights"))
        node.close()
    assert r.errors  # Kong gave up waiting
    if mode == "companion":
        assert (r.status, r.body, r.proxied) == (503, UNAVAILABLE, False)
    else:
        assert r.proxied  # Kong's own fail-open


def test_a_plugin_that_writes_no_verdict_is_refused_by_the_guard() -> None:
    """ace-guard answers 503 whenever no verdict was written, even when the server answered."""
    with PluginServerProcess(args=("--plugin", "kong_ace.testing.faulty")) as srv:
        node = KongNode(srv.socket, {"fault": "headers"}, workers=1, companions=True)
        r = node.request(KongRequest(path="/x"))
        node.close()
    assert (r.status, r.body, r.errors) == (503, UNAVAILABLE, [])
    assert any("no verdict" in msg for level, msg in r.logs if level == "err")
