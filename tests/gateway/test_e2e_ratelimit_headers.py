"""rate_limiting.headers through the real kong-ace-server: the IETF fields reach the client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kong_ace.testing import KongNode, PluginServerProcess
from tests.gateway.support import get, outcomes_config

SEATS = "/flights/v1/flights/BA1/seats"  # 2 per minute in outcomes_config


@pytest.fixture  # one per test: the counters live in the server process
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


@pytest.mark.parametrize("style", ["ietf", "both"])
def test_ietf_fields_on_admits_and_on_the_429(server: PluginServerProcess, style: str) -> None:
    config = outcomes_config(rate_limiting={"window_type": "fixed", "headers": style})
    node = KongNode(server.socket, config)
    try:
        first, second, refused = (get(node, SEATS, "good") for _ in range(3))
    finally:
        node.close()
    assert [r.status for r in (first, second, refused)] == [200, 200, 429]
    assert first.headers["RateLimit-Policy"] == '"minute";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"minute";r=1;t=')
    retry = refused.headers["Retry-After"]
    assert refused.headers["RateLimit"] == f'"minute";r=0;t={retry}'
    assert ("X-RateLimit-Remaining-Minute" in first.headers) == (style == "both")
