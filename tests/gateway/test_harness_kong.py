"""The harness plays Kong 3.9.1's side as its Lua does (kong/runloop/plugin_servers/), so the
end-to-end tests see what a real Kong would: resets, retries, Lua errors, timeouts, respawns."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest

from kong_ace.testing import KongNode, KongRPC, PluginServerProcess
from kong_ace.testing.process import RESPAWN_INTERVAL, KongManagedServer
from kong_ace.testing.rpc import KONG_SOCKET_TIMEOUT
from tests.gateway.support import MOBILE, get, outcomes_config


class FakeServer:
    """A plugin server on a Unix socket answering ``reply(msg)``; ``None`` closes the connection
    (after sending what the previous ``cut`` reply held)."""

    def __init__(self, reply: Callable[[list], bytes | None]) -> None:
        self._dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self._dir.name, "ace.socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            unpacker = msgpack.Unpacker(raw=False)
            with conn:
                closing = False
                while not closing and (chunk := conn.recv(65536)):
                    unpacker.feed(chunk)
                    for msg in unpacker:
                        data = self.reply(msg)
                        if data is None or data.startswith(CUT):
                            conn.sendall((data or b"")[len(CUT):])
                            closing = True  # EOF right after (part of) a reply
                            break
                        conn.sendall(data)

    def close(self) -> None:
        self.sock.close()
        self._dir.cleanup()


CUT = b"CUT:"  # a reply starting with this is sent without the prefix, then EOF


def answering(handle_event_reply: Callable[[int], bytes | None],
              ) -> Callable[[list], bytes | None]:
    def reply(msg: list) -> bytes | None:
        _, msgid, method, _args = msg
        if method == "plugin.StartInstance":
            return msgpack.packb([1, msgid, None, {"Id": 1, "Config": {}}])
        return handle_event_reply(msgid)
    return reply


@pytest.fixture
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


def test_a_reply_cut_by_eof_is_a_500() -> None:
    def cut(msgid: int) -> bytes:
        whole = msgpack.packb([1, msgid, None, {"EventId": 1, "Data": "ret"}])
        return CUT + whole[: len(whole) // 2]
    fake = FakeServer(answering(cut))
    try:
        r = KongNode(fake.path, outcomes_config(), workers=1).request(path="/")
        assert (r.status, r.proxied) == (500, False)  # was: "no data", the request went on
        assert "Lua error" in r.errors[0]
    finally:
        fake.close()


def test_an_eof_without_a_reply_is_logged_and_the_request_goes_on() -> None:
    fake = FakeServer(answering(lambda _msgid: None))
    try:
        r = KongNode(fake.path, outcomes_config(), workers=1).request(path="/")
        assert (r.status, r.proxied, r.errors) == (200, True, ["no data"])  # Kong fails open
    finally:
        fake.close()


def test_a_reply_with_another_msgid_is_a_500() -> None:
    fake = FakeServer(answering(
        lambda msgid: msgpack.packb([1, msgid + 7, None, {"EventId": 1, "Data": "ret"}])))
    try:
        r = KongNode(fake.path, outcomes_config(), workers=1).request(path="/")
        assert (r.status, r.proxied) == (500, False)  # was: an AssertionError in the test
        assert "unexpected RPC response ID" in r.errors[0]
    finally:
        fake.close()


def test_kongs_socket_timeout_is_60_seconds() -> None:
    assert KONG_SOCKET_TIMEOUT == 60.0
    assert KongRPC("/nowhere").timeout == 60.0  # was 30


def test_no_plugin_instance_resets_every_worker(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), workers=2, consumers=[MOBILE])
    assert [get(node, "/flights/v1/flights", "good", worker=w).status for w in (0, 1)] == \
        [200, 200]
    rpc = KongRPC(server.socket)
    rpc.call("plugin.CloseInstance", node.workers[0].running[node.plugin_id]["id"])
    rpc.close()
    r = get(node, "/flights/v1/flights", "good", worker=0)
    assert (r.status, r.errors) == (200, [])
    assert ("warn", next(m for _, m in r.logs if "no plugin instance" in m)) in r.logs
    # The worker event reached worker 1 too: its next request starts a new instance.
    assert node.workers[1].running == {} and node.workers[1].resets == 1
    assert get(node, "/flights/v1/flights", "good", worker=1).status == 200
    assert len(node.workers[1].started) == 2
    node.close()


def test_a_new_server_pid_resets_the_workers_instances() -> None:
    first = PluginServerProcess().start()
    try:
        node = KongNode(first.socket, outcomes_config(), workers=1, consumers=[MOBILE])
        assert get(node, "/flights/v1/flights", "good").status == 200
        first.proc.kill()  # type: ignore[union-attr]
        first.proc.wait(timeout=10)  # type: ignore[union-attr]
        with PluginServerProcess(prefix=first.prefix) as second:
            r = get(node, "/flights/v1/flights", "good")
            assert (r.status, r.errors) == (200, [])
            # The new connection's serverPid reset the worker's instances (plugin.lua), then
            # HandleEvent with the id taken before answered "no plugin instance": a 2nd reset.
            assert any("no plugin instance" in m for _, m in r.logs)
            assert node.workers[0].resets == 2
            assert node.workers[0].rpc.server_pid == second.pid
        node.close()
    finally:
        first.stop()


def test_kong_respawns_a_dead_server_no_sooner_than_a_second_after_its_start() -> None:
    with KongManagedServer() as managed:
        for _ in range(2):
            pid = managed.pid
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while managed.pid == pid or not Path(managed.socket).exists():
                assert time.monotonic() < deadline
                time.sleep(0.01)
        gaps = [b - a for a, b in zip(managed.starts, managed.starts[1:], strict=False)]
        assert len(gaps) == 2 and all(g >= RESPAWN_INTERVAL for g in gaps), gaps
