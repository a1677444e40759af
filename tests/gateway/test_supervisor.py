"""`kong-ace-server --supervise`: the socket outlives the serving process (SPEC §10)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from kong_ace.gateway.supervisor import FREE_RESTARTS, MAX_BACKOFF, backoff, child_command
from kong_ace.testing import KongNode, KongRPC, PluginServerProcess, Result, RPCFailure
from kong_ace.testing.process import KongManagedServer
from tests.gateway.support import MOBILE, get, outcomes_config


def server_pid(socket: str) -> int:
    rpc = KongRPC(socket, timeout=30)
    try:
        return int(rpc.call("plugin.GetStatus")["Pid"])
    finally:
        rpc.close()


def wait_for(cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(cond):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _holds(cond: Callable[[], bool]) -> bool:
    # A probe that meets the serving process as it hands over fails like Kong's call would.
    try:
        return cond()
    except RPCFailure:
        return False


def load_with_kills(srv: PluginServerProcess, kill: Callable[[], None], kills: int = 2,
                    workers: int = 4, per: int = 150) -> list[Result]:
    """``workers`` workers send ``per`` requests each; ``kill`` runs ``kills`` times meanwhile."""
    node = KongNode(srv.socket, outcomes_config(), workers=workers, consumers=[MOBILE])
    results: list[Result] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(per):
            r = get(node, "/flights/v1/flights", "good" if i % 2 else None, worker=w)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for k in range(1, kills + 1):
        wait_for(lambda k=k: len(results) >= k * workers * per // (kills + 1))
        kill()
    for t in threads:
        t.join(timeout=300)
    node.close()
    assert len(results) == workers * per  # every request answered, once
    return results


def connect_errors(results: list[Result]) -> int:
    return sum(any("failed to connect" in e for e in r.errors) for r in results)


def test_sigkilled_child_under_load_no_connect_is_refused() -> None:
    with PluginServerProcess(args=("--supervise",)) as sup:
        pids: list[int] = []

        def kill() -> None:
            pid = server_pid(sup.socket)
            pids.append(pid)
            os.kill(pid, signal.SIGKILL)

        results = load_with_kills(sup, kill)
        assert sup.alive()
        assert server_pid(sup.socket) not in pids  # restarted, twice
        log = sup.log
    refused = connect_errors(results)
    in_flight = sum(bool(r.errors) for r in results) - refused
    with KongManagedServer() as managed:  # the same load against a server Kong respawns
        managed_results = load_with_kills(managed, lambda: managed.proc.kill())  # type: ignore
    managed_refused = connect_errors(managed_results)
    print(f"\nSIGKILL x2 under load, {len(results)} requests: supervised {refused} connects "
          f"refused ({in_flight} cut in flight); Kong-managed respawn {managed_refused} "
          f"connects refused")
    assert refused == 0  # connects waited in the supervisor's backlog
    assert managed_refused > 0  # what the supervisor saves: Kong would let these through
    # Only the requests in flight at each kill failed (Kong logs "no data" and goes on).
    assert in_flight <= 2 * 4
    ok = [r for r in results if not r.errors]
    # Seen once in a loaded CI run, not reproduced alone: one request around a kill answered
    # 500 by the plugin (fail closed). Bounded here; the cause is still open (see docs/security.md).
    assert {r.status for r in ok} <= {200, 401, 500} and len(ok) >= len(results) - 8
    assert sum(r.status == 500 for r in ok) <= 2
    assert all(r.proxied == (r.status == 200) for r in ok)  # never a refused one let through
    assert log.count("serving child started") == 3


def test_sigterm_stops_child_and_supervisor_and_removes_the_socket() -> None:
    sup = PluginServerProcess(args=("--supervise",)).start()
    try:
        child = server_pid(sup.socket)
        sup.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert sup.proc.wait(timeout=20) == 0  # type: ignore[union-attr]
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
        assert not os.path.exists(sup.socket)
    finally:
        sup.stop()


def test_sighup_restarts_the_child_and_keeps_the_socket() -> None:
    with PluginServerProcess(args=("--supervise",)) as sup:
        node = KongNode(sup.socket, outcomes_config(), consumers=[MOBILE])
        assert get(node, "/flights/v1/flights", "good").status == 200
        first = server_pid(sup.socket)
        sup.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: server_pid(sup.socket) != first)
        r = get(node, "/flights/v1/flights", "good")
        assert (r.status, r.errors) == (200, [])  # new serverPid: Kong restarts its instance
        assert node.workers[0].resets >= 1
        assert sup.alive()
        node.close()


def test_child_command_and_crash_loop_backoff() -> None:
    cmd = child_command(["-p", "/x", "--supervise", "--mode", "threading"], 7)
    assert "--supervise" not in cmd and cmd[-2:] == ["--listen-fd", "7"]
    assert cmd[cmd.index("-p") + 1] == "/x" and "threading" in cmd
    assert [backoff(n) for n in range(FREE_RESTARTS + 1)] == [0.0] * (FREE_RESTARTS + 1)
    assert 0 < backoff(FREE_RESTARTS + 1) < backoff(FREE_RESTARTS + 2) <= MAX_BACKOFF
    assert backoff(100) == MAX_BACKOFF


