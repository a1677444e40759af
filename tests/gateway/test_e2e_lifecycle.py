"""The plugin server's lifecycle (SPEC §10, and the lifecycle items of §9's issue): instances Kong
can no longer reach, bounded compiled configs, stopping with events in flight, its socket, event
ids across restarts."""

from __future__ import annotations

import os
import signal
import socket as socketlib
import subprocess
import time
from typing import Any

import pytest

from kong_ace.gateway import rpc as rpc_module
from kong_ace.gateway.events import GreenletEvent
from kong_ace.gateway.rpc import PluginServer
from kong_ace.testing import KongNode, KongRPC, PluginServerProcess, noop, server_command
from kong_ace.testing.process import KongManagedServer
from kong_ace.testing.rpc import RPCFailure
from tests.gateway.support import MOBILE, get, outcomes_config


def status(socket: str) -> dict[str, Any]:
    rpc = KongRPC(socket)
    try:
        return rpc.call("plugin.GetStatus")["Plugins"]["ace"]  # type: ignore[no-any-return]
    finally:
        rpc.close()


def start(rpc: KongRPC, config: dict[str, Any]) -> int:
    import json

    return rpc.call("plugin.StartInstance", {"Name": "ace", "Config": json.dumps(config)})["Id"]


# --- instances Kong can no longer reach (policy, injected clock) ------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def noop_server(clock: Clock, grace: float = 60, idle: float = 3600) -> PluginServer:
    return PluginServer("ace", noop, GreenletEvent, instance_grace=grace, instance_idle=idle,
                        clock=clock)


def started(server: PluginServer, pid: str, seq: int) -> int:
    import json

    conf = {"__plugin_id": pid, "__seq__": seq}
    return server.start_instance({"Name": "ace", "Config": json.dumps(conf)})["Id"]


def test_superseded_instances_close_after_the_grace_period_without_events() -> None:
    clock = Clock()
    server = noop_server(clock)
    a = started(server, "p", 5)  # worker 0
    b = started(server, "p", 6)  # worker 1: a later __seq__ of the same plugin
    other = started(server, "q", 1)  # another plugin
    clock.now += 59
    server.handle_event({"InstanceId": a, "EventName": "access"})  # worker 0 still uses it
    clock.now += 59
    assert server.reap(clock.now) == []  # a was used 59 s ago: within the grace period
    clock.now += 2
    assert server.reap(clock.now) == [a]  # superseded and idle for the grace period
    assert sorted(server.instances) == sorted([b, other])  # b and q's are nobody's successors
    clock.now += 3600
    assert sorted(server.reap(clock.now)) == sorted([b, other])  # idle for the bound
    assert server.reaped == 3


def test_an_instance_restarted_by_the_same_worker_supersedes_its_old_one() -> None:
    clock = Clock()
    server = noop_server(clock, grace=0)
    old = started(server, "p", 7)
    new = started(server, "p", 7)  # "no plugin instance" reset: the same __seq__ again
    assert old not in server.instances and new in server.instances


# --- through the real server ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["gevent", "threading"])
def test_closing_instances_kong_still_uses_is_safe(mode: str) -> None:
    """Grace 0: every start closes the other worker's instance; Kong re-creates it."""
    with PluginServerProcess(args=("--mode", mode, "--instance-grace", "0")) as srv:
        node = KongNode(srv.socket, outcomes_config(), workers=2, consumers=[MOBILE])
        for i in range(40):
            w = i % 2
            r = get(node, "/flights/v1/flights", "good" if i % 3 else "revoked", worker=w)
            assert (r.status, r.errors) == ((200 if i % 3 else 401), [])
        assert sum(w.resets for w in node.workers) > 0  # instances were closed under Kong
        st = status(srv.socket)
        assert st["Reaped"] > 0 and len(st["Instances"]) <= 2
        node.close()


def test_instances_dropped_by_kong_are_closed_and_compiled_configs_stay_bounded() -> None:
    # Kong drops its claims without CloseInstance on "no plugin instance" (every worker) and on
    # a new server pid; with each config change the dropped instances used to pile up, each
    # holding its compiled catalog.
    with PluginServerProcess(args=("--instance-grace", "0")) as srv:
        node = KongNode(srv.socket, outcomes_config(), workers=2, consumers=[MOBILE])
        for k in range(8):
            node.configure(outcomes_config(packages=outcomes_config()["packages"]
                                           + [{"name": f"p{k}", "operations": []}]))
            for w in (0, 1):
                assert get(node, "/flights/v1/flights", "good", worker=w).status == 200
            node.reset_instances()  # as after a "no plugin instance" on another worker
        for w in (0, 1):
            assert get(node, "/flights/v1/flights", "good", worker=w).status == 200
        st = status(srv.socket)
        assert len(st["Instances"]) <= 2
        assert st["Compiled"] == 1 and st["CompiledIdle"] <= 2
        node.close()


# --- stopping -----------------------------------------------------------------------------


class Wire:
    """A raw Kong connection: writes calls and reads messages without nginx's pool rules."""

    def __init__(self, path: str) -> None:
        import msgpack

        self.sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.msg_id = 0
        self.notes: list[list[Any]] = []
        assert self.read()[:2] == [2, "serverPid"]

    def write(self, method: str, *args: Any) -> int:
        import msgpack

        self.msg_id += 1
        self.sock.sendall(msgpack.packb([0, self.msg_id, method, list(args)]))
        return self.msg_id

    def read(self) -> list[Any]:
        while True:
            for msg in self.unpacker:
                return msg  # type: ignore[no-any-return]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed by the server")
            self.unpacker.feed(chunk)

    def reply(self, msg_id: int) -> Any:
        """The result of call ``msg_id``; notifications before it are kept in ``notes``."""
        while True:
            msg = self.read()
            if msg[0] == 2:
                self.notes.append(msg)
                continue
            assert msg[:3] == [1, msg_id, None], msg
            return msg[3]

    def call(self, method: str, *args: Any) -> Any:
        return self.reply(self.write(method, *args))


@pytest.mark.parametrize("mode", ["gevent", "threading"])
def test_a_stopping_server_answers_every_call_and_lets_idle_connections_go(mode: str) -> None:
    # SPEC §10: Kong's pool hands out a connection and writes a call without asking whether
    # the server is leaving; only an idle pooled connection that turns readable is dropped.
    with PluginServerProcess(args=("--mode", mode)) as srv:
        a, b = Wire(srv.socket), Wire(srv.socket)
        iid = a.call("plugin.StartInstance",
                     {"Name": "ace", "Config": __import__("json").dumps(outcomes_config())})["Id"]
        step = a.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
        assert step["Data"]["Method"] == "kong.nginx.get_ctx"
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        # Idle connections are poked: one notification Kong ignores, which makes nginx's pool
        # drop the connection (ngx_http_lua_socket_keepalive_close_handler).
        assert a.read()[:2] == [2, "serverDraining"]
        assert b.read()[:2] == [2, "serverDraining"]
        # Kong had taken `a` from its pool before the poke reached it: its Step is answered.
        step = a.call("plugin.Step", {"EventId": step["EventId"]})
        assert step["Data"]["Method"] == "kong.nginx.get_var"
        step = a.call("plugin.Step", {"EventId": step["EventId"],
                                      "Data": "GET /flights/v1/flights HTTP/1.1"})
        step = a.call("plugin.StepMultiMap", {"EventId": step["EventId"], "Data": {}})
        while step["Data"]["Method"] != "kong.response.exit":  # the consumer: none
            step = a.call("plugin.StepConsumer", {"EventId": step["EventId"]})
        assert step["Data"]["Args"][0] == 401  # no key: decided and sent while stopping
        # No event in flight any more. Before: the server exited here, and a call Kong wrote
        # next on a pooled connection died ("no data": the request went through unchecked).
        time.sleep(0.3)
        assert srv.alive()
        assert b.call("plugin.GetStatus")["Pid"] == srv.pid
        assert a.read()[:2] == [2, "serverDraining"]  # poked again once idle after its call
        assert b.read()[:2] == [2, "serverDraining"]
        t0 = time.monotonic()
        a.sock.close()
        b.sock.close()  # what nginx's pool does with a poked idle connection
        assert srv.proc.wait(timeout=10) == 0  # type: ignore[union-attr]
        assert time.monotonic() - t0 < 2  # at once, not at the drain bound
        assert "every connection let go, no event in flight" in srv.log


def test_kongs_pool_model_drops_a_poked_idle_connection_and_reconnects() -> None:
    # The harness's pool follows nginx: an idle pooled connection that turned readable is
    # dropped before the next call, which then connects afresh (here: to the successor).
    with PluginServerProcess(args=("--supervise",)) as sup:
        rpc = KongRPC(sup.socket)
        first = rpc.call("plugin.GetStatus")["Pid"]
        sup.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while rpc.call("plugin.GetStatus")["Pid"] == first:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert [n for n in rpc.notifications if n[0] == "serverDraining"] == []  # dropped unread
        rpc.close()


def test_sigterm_waits_for_events_only_up_to_the_bound() -> None:
    with PluginServerProcess(args=("--drain-timeout", "0.5")) as srv:
        rpc = KongRPC(srv.socket)
        iid = start(rpc, outcomes_config())
        rpc.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})  # never ends
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert srv.proc.wait(timeout=10) == 0  # type: ignore[union-attr]
        assert 0.4 <= time.monotonic() - t0 < 5
        assert "1 connection(s) open and 1 event(s) in flight" in srv.log
        rpc.close()


def test_a_stopping_server_never_removes_a_socket_that_is_not_its_own() -> None:
    with PluginServerProcess() as first:
        second = PluginServerProcess(prefix=first.prefix).start()  # replaced our socket file
        try:
            rpc = KongRPC(first.socket)
            rpc.call("plugin.GetStatus")
            first.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            first.proc.wait(timeout=10)  # type: ignore[union-attr]
            assert os.path.exists(first.socket)
            assert status(first.socket)["Name"] == "ace"  # the second still serves it
            rpc.close()
        finally:
            second.stop()


# --- event ids across restarts ----------------------------------------------------------------


def test_a_step_from_before_a_restart_never_lands_in_another_event() -> None:
    first = PluginServerProcess().start()
    try:
        rpc = KongRPC(first.socket)
        stale = rpc.call("plugin.HandleEvent",
                         {"InstanceId": start(rpc, outcomes_config()), "EventName": "access"})
        rpc.close()
        first.proc.kill()  # type: ignore[union-attr]
        first.proc.wait(timeout=10)  # type: ignore[union-attr]
        with PluginServerProcess(prefix=first.prefix) as second:
            other = KongRPC(second.socket)
            live = other.call("plugin.HandleEvent", {"InstanceId": start(other, outcomes_config()),
                                                     "EventName": "access"})
            # Before: both processes numbered events from 0, so the stale Step resumed `live`.
            assert live["EventId"] != stale["EventId"]
            # Answered "no plugin instance": Kong restarts the phase (mp_rpc.lua handle_event).
            with pytest.raises(RPCFailure, match="no plugin instance"):
                other.call("plugin.Step", {"EventId": stale["EventId"], "Data": "x"})
            assert live["Data"]["Method"] == "kong.nginx.get_ctx"
            step = other.call("plugin.Step", {"EventId": live["EventId"]})
            assert step["Data"]["Method"] == "kong.nginx.get_var"  # untouched by the stale Step
            other.close()
    finally:
        first.stop()


def test_event_ids_start_at_a_random_base_in_each_process() -> None:
    bases = {next(PluginServer("ace", noop, GreenletEvent)._event_ids) for _ in range(5)}
    assert len(bases) == 5 and all(0 < b < 2**53 for b in bases)
    assert rpc_module.INSTANCE_GRACE > 0


# --- the socket name -------------------------------------------------------------------------


def test_the_default_socket_is_kongs_convention(tmp_path: Any) -> None:
    proc = subprocess.Popen([*server_command(), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        path = tmp_path / "ace.socket"  # Kong's default: <prefix>/<name>.socket
        deadline = time.monotonic() + 30
        while not path.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert status(str(path))["Name"] == "ace"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- memory counters live in the server process (docs/rate-limits.md) -----------------------


def test_memory_counters_survive_config_changes_and_reset_with_the_process() -> None:
    seats = "/flights/v1/flights/BA1/seats"  # 2 per minute for the application
    with KongManagedServer() as managed:
        node = KongNode(managed.socket, outcomes_config(), workers=1, consumers=[MOBILE])
        assert [get(node, seats, "good").status for _ in range(3)] == [200, 200, 429]
        node.configure(outcomes_config(match_policy="if_present"))  # POST /config
        assert get(node, seats, "good").status == 429  # same process: counts kept
        pid = managed.pid
        managed.proc.kill()  # type: ignore[union-attr]  # a crash; Kong respawns the server
        deadline = time.monotonic() + 30
        while managed.pid == pid or not os.path.exists(managed.socket):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = get(node, seats, "good")
        while r.errors:  # the respawned server is still starting: Kong let the request through
            assert time.monotonic() < deadline
            r = get(node, seats, "good")
        assert r.status == 200  # a new process: the count started again from zero
        node.close()
