"""Classic mode with `log_summary`: the decision summary reaches Kong's log serializer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kong_ace.testing import KongNode, PluginServerProcess
from tests.gateway.support import KEYS, get, outcomes_config

FLIGHTS = "/flights/v1/flights"


@pytest.fixture(scope="module")
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


@pytest.fixture
def node(server: PluginServerProcess) -> Iterator[KongNode]:
    config = outcomes_config(log_summary=True)
    config["applications"] = [a for a in config["applications"] if not a.get("consumer")]
    n = KongNode(server.socket, config, workers=1)
    yield n
    n.close()


def test_allowed_request_logs_operation_application_package_and_quota(node: KongNode) -> None:
    r = get(node, FLIGHTS, "good")
    assert r.status == 200
    assert r.serialized == {"ace": {
        "outcome": "allowed", "reason": "allowed", "operation": "listFlights",
        "application": "good", "package": "basic", "api": "flights", "remaining": 999}}


@pytest.mark.parametrize(("key", "path", "expected"), [
    (None, FLIGHTS, {"status": 401, "reason": "no_key", "operation": "listFlights",
                     "api": "flights"}),
    ("revoked", FLIGHTS, {"status": 401, "reason": "revoked", "operation": "listFlights",
                          "api": "flights"}),
    ("pending", "/bookings/v2/bookings", {"status": 403, "reason": "pending",
                                          "operation": "listBookings", "api": "bookings",
                                          "application": "pending"}),
    ("good", "/nowhere", {"status": 404, "reason": "no_operation"}),
])
def test_denials_log_their_reason(node: KongNode, key: str | None, path: str,
                                  expected: dict) -> None:
    r = get(node, path, key)
    assert r.status == expected["status"]
    assert r.serialized == {"ace": {"outcome": "denied", **expected}}


def test_limited_request_logs_no_quota_left(node: KongNode) -> None:
    seats = "/flights/v1/flights/BA1/seats"
    remaining = [get(node, seats, "good").serialized["ace"]["remaining"] for _ in range(2)]
    assert remaining == [1, 0]
    r = get(node, seats, "good")
    assert r.status == 429
    assert r.serialized["ace"] == {
        "outcome": "denied", "status": 429, "reason": "limited", "operation": "listSeats",
        "application": "good", "api": "flights", "remaining": 0}


def test_no_key_ever_reaches_the_log(node: KongNode) -> None:
    for key in ("good", "revoked", "not-a-key-at-all"):
        r = get(node, FLIGHTS, key)
        assert KEYS.get(key, key) not in repr(r.serialized)


def test_off_by_default(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), workers=1)
    r = get(node, FLIGHTS, "good")
    assert r.status == 200 and r.serialized == {}
    assert "kong.log.set_serialize_value" not in r.pdk_calls
    node.close()
