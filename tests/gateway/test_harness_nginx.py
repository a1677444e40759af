"""The harness's nginx request-line refusals, on the cases checked against the real Kong 3.9.1.

Each (method, target) below was sent on a raw socket to the real Kong (2026-12-06); ``True``
where nginx answered 400 before any Kong phase. tests/realkong/test_conformance.py runs a
share of them through both; this table keeps the fast suite honest without a Kong.
"""

from __future__ import annotations

import pytest

from kong_ace.testing import KongNode, PluginServerProcess
from kong_ace.testing.nginx import BAD_REQUEST, refuses
from kong_ace.testing.pdk import KongRequest

REAL_KONG = [
    ("GET", "/%zz", True), ("GET", "/a%", True), ("GET", "/a%2", True),
    ("GET", "/%2e%2e/x", True), ("GET", "/x/%2e%2e/%2e%2e/y", True), ("GET", "/x/../../y", True),
    ("GET", "/a\x01b", True), ("GET", "/a b", True), ("GET", "/a\x7fb", True),
    ("GET", "/a?b\x01", True), ("GET", "/a%00b", True), ("GET", "/%2e%2e", True),
    ("GET", "/..", True), ("GET", "/x/%2E%2E/..", True), ("GET", "/a/%2F..%2F..%2F", True),
    ("GET", "/a//../..", True), ("GET", "/a/%2e./.%2E", True),
    ("GET", "/a%2f%2e%2e%2f%2e%2e", True),
    ("GET", "http://x/../a", True), ("GeT", "/a", True), ("GET1", "/a", True),
    ("GET", "*", True), ("get", "/a", True),
    ("GET_X", "/a", False), ("G-ET", "/a", False), ("GET", "/a?%zz", False),
    ("GET", "/a?b%00", False), ("GET", "/caf\u00e9", False), ("GET", "/x/..", False),
    ("GET", "/a#b", False), ("GET", "/a%23b", False), ("GET", "/a/./..%2f", False),
    ("GET", "/a/..;/..", False), ("GET", "/a/%25%32%65", False), ("GET", "http://x", False),
    ("GET", "/a/.../b", False), ("GET", "/a/%2e%2E%2e", False),
]


@pytest.mark.parametrize(("method", "target", "refused"), REAL_KONG)
def test_refuses_what_nginx_refuses(method: str, target: str, refused: bool) -> None:
    assert refuses(method, target) is refused


def test_a_refused_request_never_reaches_the_plugin() -> None:
    with PluginServerProcess() as server:
        node = KongNode(server.socket, {"match_policy": "if_present"}, workers=1)
        r = node.request(KongRequest(path="/x/../../y", headers={"host": "h"}))
        assert (r.status, r.body, r.proxied, r.rpc_calls) == (400, BAD_REQUEST, False, 0)
        behind = KongNode(server.socket, {"match_policy": "if_present"}, workers=1, nginx=False)
        assert behind.request(KongRequest(path="/x/../../y", headers={"host": "h"})).proxied
        node.close()
        behind.close()
