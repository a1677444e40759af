"""Smoke: an allowed and a refused request through a real Kong 3.9.1, both modes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.gateway.support import KEYS, outcomes_config
from tests.realkong.kong import KongNode, Upstream, ace_config, header


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_allowed_and_401(mode: str, kong_node: Callable[..., KongNode],
                         upstream: Upstream) -> None:
    node = kong_node(ace_config(upstream.url, outcomes_config()), mode=mode)
    upstream.clear()
    ok = node.request("GET", "/flights/v1/flights?from=LHR",
                      {"apikey": KEYS["good"], "X-ACE-Application-ID": "forged"})
    assert ok.status == 200, ok.body
    (seen,) = upstream.received
    assert seen["target"] == "/flights/v1/flights?from=LHR"
    assert header(seen, "X-ACE-Application-ID") == ["good"]
    assert header(seen, "X-ACE-Operation-ID") == ["listFlights"]
    assert header(seen, "X-ACE-Package") == ["basic"]

    upstream.clear()
    denied = node.request("GET", "/flights/v1/flights")
    assert denied.status == 401
    assert denied.json == {"message": "No API key found in request"}
    assert denied.headers["WWW-Authenticate"] == 'Key realm="kong"'
    assert upstream.received == []
    node.cleanup()
