"""The kong-pdk 0.36 server faults (SPEC §6): present in the stock server, absent in ours."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kong_ace.testing import KongNode, KongRequest, KongRPC, PluginServerProcess, RPCFailure
from tests.gateway.support import KEYS, MOBILE, get, outcomes_config

STOCK = [sys.executable, str(Path(__file__).parents[1] / "stock_server.py")]
LATIN1 = "caf\xe9".encode("latin-1")  # a header value that is not UTF-8


@pytest.fixture(params=["gevent", "threading"])
def ours(request: pytest.FixtureRequest) -> Iterator[PluginServerProcess]:
    args = ("--mode", request.param, "--plugin", "kong_ace.testing.faulty")
    with PluginServerProcess(args=args) as srv:
        yield srv


@pytest.fixture
def stock() -> Iterator[PluginServerProcess]:
    with PluginServerProcess(STOCK) as srv:
        yield srv


def start(rpc: KongRPC, fault: str) -> int:
    return rpc.call("plugin.StartInstance", {"Name": "ace", "Config": f'{{"fault": "{fault}"}}'})[
        "Id"]


def test_stock_server_wedges_after_an_exception_before_the_first_pdk_call(
        stock: PluginServerProcess) -> None:
    a, b = KongRPC(stock.socket, timeout=1.0), KongRPC(stock.socket, timeout=1.0)
    bad, good = start(a, "raise_first"), start(a, "headers")
    with pytest.raises(RPCFailure):  # never answered: Kong would time out, then fail open
        a.call("plugin.HandleEvent", {"InstanceId": bad, "EventName": "access"})
    with pytest.raises(RPCFailure):  # and every later event, on any connection, waits too
        b.call("plugin.HandleEvent", {"InstanceId": good, "EventName": "access"})


@pytest.mark.parametrize("fault", ["raise_first", "raise_later"])
def test_our_server_answers_500_and_keeps_serving(ours: PluginServerProcess, fault: str) -> None:
    node = KongNode(ours.socket, {"fault": fault}, workers=2)
    for worker in (0, 1, 0):
        r = node.request(KongRequest(), worker=worker)
        assert (r.status, r.body, r.proxied) == (500, {"message": "An unexpected error occurred"},
                                                 False)
        assert r.errors == []
    healthy = KongNode(ours.socket, {"fault": "headers"})
    assert healthy.request(KongRequest(headers={"a": "1"})).upstream("x-seen-headers") == "1"
    node.close()
    healthy.close()


def test_stock_server_drops_the_connection_on_a_non_utf8_header(
        stock: PluginServerProcess) -> None:
    node = KongNode(stock.socket, {"fault": "headers"}, workers=1)
    r = node.request(KongRequest(headers={"x-name": LATIN1}))
    assert r.errors and "no data" in r.errors[0]
    assert r.proxied  # Kong logs the error and lets the request through: fail open
    node.close()


def test_our_server_keeps_non_utf8_header_values(ours: PluginServerProcess) -> None:
    node = KongNode(ours.socket, {"fault": "headers"}, workers=1)
    r = node.request(KongRequest(headers={"x-name": LATIN1, "b": "2"}))
    assert (r.status, r.errors, r.upstream("x-seen-headers")) == (200, [], "2")
    # The same connection serves the next request.
    assert node.request(KongRequest(headers={"c": "3"})).upstream("x-seen-headers") == "1"
    node.close()


def test_the_ace_adapter_judges_a_non_utf8_key_without_failing() -> None:
    with PluginServerProcess() as srv:
        node = KongNode(srv.socket, outcomes_config(), consumers=[MOBILE])
        r = get(node, "/flights/v1/flights", headers={"apikey": LATIN1})
        assert (r.status, r.message) == (401, "Unauthorized")
        assert get(node, "/flights/v1/flights", KEYS["good"]).status == 200
        node.close()


def test_rpc_protocol_errors_do_not_take_the_server_down(ours: PluginServerProcess) -> None:
    rpc = KongRPC(ours.socket, timeout=5.0)
    with pytest.raises(RPCFailure, match="not supported"):
        rpc.call("plugin.Nope")
    iid = start(rpc, "headers")
    assert rpc.server_pid == ours.pid  # the serverPid notification Kong resets instances on
    # A Step for an event the server does not know (another server process started it, during
    # a restart) is answered "no plugin instance": Kong restarts the phase (mp_rpc.lua
    # handle_event), never an error Kong would log and pass the request on.
    with pytest.raises(RPCFailure, match="no plugin instance"):
        rpc.call("plugin.Step", {"EventId": 987654, "Data": None})
    # StepError (older Kongs) fails the handler's PDK call: 500, not a pass.
    ev = rpc.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
    assert ev["Data"]["Method"] == "kong.request.get_headers"
    end = rpc.call("plugin.StepError", {"EventId": ev["EventId"], "Data": "boom"})
    assert end["Data"]["Method"] == "kong.response.exit" and end["Data"]["Args"][0] == 500
    # Garbage on one connection closes that connection only.
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(ours.socket)
    raw.sendall(b"\xc1" * 16)  # 0xc1 is never valid msgpack
    raw.settimeout(5.0)
    data = b""
    while chunk := raw.recv(4096):
        data += chunk
    raw.close()
    node = KongNode(ours.socket, {"fault": "headers"})
    assert node.request(KongRequest(headers={"a": "1"})).upstream("x-seen-headers") == "1"
    node.close()
    rpc.close()


def test_blocking_io_in_a_handler_does_not_serialise_requests(
        ours: PluginServerProcess) -> None:
    node = KongNode(ours.socket, {"fault": "slow_io"}, workers=4)
    for w in range(4):  # start the instances first
        node.request(KongRequest(), worker=w)
    results: list[object] = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda w=w: results.append(
        node.request(KongRequest(headers={"n": str(w)}), worker=w))) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert [r.upstream("x-seen-headers") for r in results] == ["1"] * 4  # type: ignore[attr-defined]
    assert elapsed < 0.7  # four 0.2 s waits overlapped (serialised they take 0.8 s)
    node.close()


@pytest.mark.parametrize("mode", ["gevent", "threading"])
def test_a_hung_handler_is_answered_500_before_kong_gives_up(mode: str) -> None:
    args = ("--mode", mode, "--plugin", "kong_ace.testing.faulty", "--event-timeout", "0.5")
    with PluginServerProcess(args=args) as srv:
        hung = KongNode(srv.socket, {"fault": "hang"})
        t0 = time.monotonic()
        r = hung.request(KongRequest())
        assert (r.status, r.proxied, r.errors) == (500, False, [])
        assert time.monotonic() - t0 < 5
        healthy = KongNode(srv.socket, {"fault": "headers"})
        assert healthy.request(KongRequest(headers={"a": "1"})).upstream("x-seen-headers") == "1"
        hung.close()
        healthy.close()


def test_the_adapter_also_runs_on_the_stock_server() -> None:
    # kong-pdk's default Lua-style PDK answers (data, err) pairs: the adapter reads both styles.
    with PluginServerProcess([*STOCK, "--adapter"]) as srv:
        node = KongNode(srv.socket, outcomes_config(), consumers=[MOBILE])
        ok = get(node, "/flights/v1/flights", "good")
        assert (ok.status, ok.upstream("X-ACE-Application-ID")) == (200, "good")
        assert get(node, "/flights/v1/flights", None).message == "No API key found in request"
        node.close()
