"""The shortcuts of the hot path decide exactly as the long way round (issue 6)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kong_ace import Enforcer, Request
from kong_ace.core.matcher import NO_MATCH, Match, Matcher, Operation, Scope, _walk
from kong_ace.gateway.events import KONG, PDKError
from kong_ace.testing import KongNode, KongRequest, PluginServerProcess
from kong_ace.testing.bench import REQUESTS, e2e_config
from tests.gateway.support import KEYS, SPECS, outcomes_config

TEMPLATES = [
    ("GET", "/a/b/c"), ("GET", "/a/{x}/c"), ("POST", "/a/{x}/d"), ("GET", "/a/b/{y}/e"),
    ("GET", "/f/{name}.json"), ("GET", "/f/{name}"), ("PUT", "/f/x.json"), ("GET", "/"),
    ("HEAD", "/h/{id}"), ("GET", "/h/{id}"), ("GET", "/g/{a}-{b}/z"), ("DELETE", "/g/x-y/z"),
]
SEGMENTS = ["a", "b", "c", "d", "e", "f", "x.json", "q.json", "h", "g", "x-y", "k-l", "z", "s", ""]


def reference_match(m: Matcher, method: str, path: str, service: tuple[str, ...] = (),
                    host: str | None = None) -> Match:
    """Matcher.match without its fast path: the full backtracking search only."""
    body = path[1:].removesuffix("/")
    segs = body.split("/") if body else []
    allowed: set[str] = set()
    op = _walk(m._root, segs, 0, method, service, host, allowed)
    if op is not None:
        return Match(op)
    return Match(None, frozenset(allowed)) if allowed else NO_MATCH


def test_matcher_fast_path_agrees_with_the_full_search() -> None:
    m = Matcher()
    for i, (method, path) in enumerate(TEMPLATES):
        m.add(Operation(f"op{i}", "api", method, path, path, uid=i))
    m.add(Operation("scoped", "api2", "GET", "/s/{v}", "/s/{v}", uid=99), Scope(service="svc"))
    m.add(Operation("free", "api3", "GET", "/s/{v}", "/s/{v}", uid=98))
    checked = 0
    for depth in range(4):
        for segs in itertools.product(SEGMENTS, repeat=depth):
            path = "/" + "/".join(segs)
            for method in ("GET", "POST", "HEAD", "PUT", "DELETE"):
                for service, host in (((), None), (("svc",), None), ((), "h.example")):
                    got = m.match(method, path, service, host)
                    assert got == reference_match(m, method, path, service, host), (method, path)
                    checked += 1
    assert checked > 10_000


def outcome_requests() -> list[Request]:
    paths = ["/flights/v1/flights", "/flights/v1/flights/BA1/seats", "/bookings/v2/bookings",
             "/flights/v1/nope", "/elsewhere"]
    out = []
    for path, method, key in itertools.product(paths, ("GET", "POST", "get"), [None, *KEYS]):
        headers: dict[str, Any] = {"x-ace-api": ["forged"]} if key == "good" else {}
        if key is not None:
            headers["apikey"] = [KEYS[key]]
        out.append(Request(method, path, headers=headers))
    return out


@pytest.mark.parametrize("policy", ["required", "if_present"])
def test_decide_with_a_precomputed_route_is_the_same_decision(policy: str) -> None:
    clock = lambda: 1_700_000_000.0  # noqa: E731 - a fixed time: both runs see the same windows
    config = outcomes_config()
    config["match_policy"] = policy
    plain, routed = Enforcer(config, clock=clock), Enforcer(config, clock=clock)
    for req in outcome_requests():
        assert routed.decide(req, routed.route(req)) == plain.decide(req), req


def test_a_pdk_call_outside_a_running_event_is_refused() -> None:
    with pytest.raises(PDKError):
        KONG.request.get_headers()


def test_the_no_op_floor_makes_the_pdk_calls_of_an_allowed_request() -> None:
    config = e2e_config(SPECS)
    with PluginServerProcess() as ace, PluginServerProcess(
            args=("--plugin", "kong_ace.testing.noop")) as noop:
        ace_node, noop_node = KongNode(ace.socket, config), KongNode(noop.socket, config)
        allowed = ace_node.request(REQUESTS["allowed"])
        floor = noop_node.request(REQUESTS["allowed"])
        assert allowed.status == floor.status == 200
        assert floor.pdk_calls == allowed.pdk_calls
        denied = ace_node.request(REQUESTS["401"])
        floor_exit = noop_node.request(KongRequest(path="/x", headers={"x-noop-exit": "401"}))
        assert denied.status == floor_exit.status == 401
        assert len(floor_exit.pdk_calls) == len(denied.pdk_calls) == 5
        ace_node.close()
        noop_node.close()


def test_socket_fast_path_moves_large_replies_whole() -> None:
    import gevent
    from gevent import socket as gsocket

    from kong_ace.gateway.rpc import socket_io

    a, b = gsocket.socketpair()
    recv_a, send_a = socket_io(a)
    recv_b, _ = socket_io(b)
    assert recv_a.__qualname__.startswith("socket_io")  # the gevent fast path, not plain recv
    payload = bytes(range(256)) * 40_000  # 10 MB: far more than one send() takes

    def read_all() -> bytes:
        got = bytearray()
        while len(got) < len(payload):
            got += recv_b(65536)
        return bytes(got)

    reader = gevent.spawn(read_all)
    send_a(payload)
    assert reader.get(timeout=30) == payload
    a.close()
    assert recv_b(10) == b""  # the peer closed: end of stream, as Connection.serve expects
    b.close()
