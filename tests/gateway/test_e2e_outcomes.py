"""Every SPEC §4 outcome, through the real kong-ace-server process and Kong's RPC protocol.

Each test runs in both modes (``kong_mode``): classic, and with the Lua companions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kong_ace.testing import KongNode, PluginServerProcess
from tests.gateway.support import (
    COMPANION_CALLS,
    KEYS,
    MOBILE,
    MOBILE_CREDENTIAL,
    get,
    node_in,
    outcomes_config,
)

CHALLENGE = {"WWW-Authenticate": 'Key realm="kong"'}


@pytest.fixture(scope="module")
def server(kong_mode: str) -> Iterator[PluginServerProcess]:
    # One server per mode: rate-limit counters are per process.
    with PluginServerProcess() as srv:
        yield srv


@pytest.fixture
def node(server: PluginServerProcess, kong_mode: str) -> Iterator[KongNode]:
    n = node_in(kong_mode, server.socket, outcomes_config(), consumers=[MOBILE])
    yield n
    n.close()


def test_allowed_request_goes_upstream_with_identity_and_quota_headers(node: KongNode) -> None:
    r = get(node, "/flights/v1/flights?from=LHR", "good",
            headers={"X-ACE-Application-ID": "forged", "X-ACE-API": "forged"})
    assert (r.status, r.proxied, r.errors) == (200, True, [])
    assert r.upstream("X-ACE-Operation-ID") == "listFlights"
    assert r.upstream("X-ACE-Application-ID") == "good"
    assert r.upstream("X-ACE-Package") == "basic"
    assert r.upstream("X-ACE-API") is None  # the forged copy is gone
    assert r.headers["RateLimit-Limit"] == "1000"
    assert r.headers["X-RateLimit-Remaining-Minute"] == "999"


@pytest.mark.parametrize(
    ("path", "key", "method", "status", "message", "headers"),
    [
        ("/nowhere", "good", "GET", 404, "no API operation matches this request", {}),
        ("/flights/v1/airports/JFK", "good", "DELETE", 405, "method not allowed",
         {"Allow": "GET"}),
        ("/flights/v1/flights", None, "GET", 401, "No API key found in request", CHALLENGE),
        ("/flights/v1/flights", "not-a-key", "GET", 401, "Unauthorized", CHALLENGE),
        ("/flights/v1/flights", "revoked", "GET", 401, "API key revoked", CHALLENGE),
        ("/flights/v1/flights", "expired", "GET", 401, "API key expired", CHALLENGE),
        ("/flights/v1/flights", "unregistered", "GET", 403,
         "application is not registered for this operation", {}),
        ("/bookings/v2/bookings", "good", "GET", 403,
         "application is not registered for this operation", {}),
        ("/bookings/v2/bookings", "pending", "GET", 403, "registration pending approval", {}),
        ("/bookings/v2/bookings", "rejected", "GET", 403, "registration rejected", {}),
        ("/bookings/v2/bookings", "regrevoked", "GET", 403, "registration revoked", {}),
    ],
)
def test_denials_answer_like_kong_plugins(node: KongNode, path: str, key: str | None,
                                          method: str, status: int, message: str,
                                          headers: dict[str, str]) -> None:
    r = get(node, path, key, method=method)
    assert (r.status, r.body, r.proxied) == (status, {"message": message}, False)
    assert r.headers == headers
    assert r.errors == []


def test_duplicate_keys_in_header_and_query(node: KongNode) -> None:
    r = get(node, f"/flights/v1/flights?apikey={KEYS['pending']}", "good")
    assert (r.status, r.message) == (401, "Duplicate API key found")
    same = get(node, f"/flights/v1/flights?apikey={KEYS['good']}", "good")
    assert same.status == 200


def test_rate_limit_429_with_retry_after_and_no_charge_when_denied(node: KongNode) -> None:
    seats = "/flights/v1/flights/BA1/seats"
    assert [get(node, seats, "good", worker=i % 2).status for i in range(2)] == [200, 200]
    r = get(node, seats, "good")
    assert (r.status, r.message) == (429, "API rate limit exceeded")
    assert int(r.headers["Retry-After"]) >= 1
    # The operation override counts apart from the package limit.
    assert get(node, "/flights/v1/flights", "good").status == 200


def test_consumer_authenticated_by_key_auth_is_its_application(node: KongNode) -> None:
    r = get(node, "/bookings/v2/bookings", consumer=MOBILE, credential=MOBILE_CREDENTIAL)
    assert r.status == 200
    assert r.upstream("X-ACE-Application-ID") == "mobile-app"
    assert r.upstream("X-ACE-Package") == "premium"


def test_key_of_a_mapped_application_authenticates_its_consumer(node: KongNode) -> None:
    r = get(node, "/bookings/v2/bookings/B1", "mobile")
    assert r.status == 200
    assert r.consumer == MOBILE  # kong.client.authenticate ran with the loaded consumer
    assert r.upstream("X-Consumer-Username") == "mobile"
    assert r.upstream("X-Consumer-ID") == MOBILE["id"]
    again = get(node, "/bookings/v2/bookings/B1", "mobile", worker=1)
    assert again.consumer == MOBILE
    if node.companions:  # ace-guard loads it in Lua, from Kong's cache: no round trip
        assert r.pdk_calls == again.pdk_calls == COMPANION_CALLS
    else:
        assert "kong.client.load_consumer" in r.pdk_calls
        # The loaded consumer is cached per process: the next request does not load it again.
        assert "kong.client.load_consumer" not in again.pdk_calls


def test_unknown_mapped_consumer_is_a_500_not_a_pass(server: PluginServerProcess,
                                                     kong_mode: str) -> None:
    config = outcomes_config()
    config["applications"][-1]["consumer"] = "ghost"  # Kong has no such consumer
    node = node_in(kong_mode, server.socket, config, consumers=[MOBILE])
    r = get(node, "/bookings/v2/bookings/B1", "mobile")
    assert (r.status, r.message, r.proxied) == (500, "An unexpected error occurred", False)
    node.close()


def test_if_present_passes_unmatched_requests_untouched(server: PluginServerProcess,
                                                        kong_mode: str) -> None:
    node = node_in(kong_mode, server.socket, outcomes_config(match_policy="if_present"))
    r = get(node, "/somewhere/else", None, headers={"x-other": "kept"})
    assert (r.status, r.proxied) == (200, True)
    assert r.upstream("x-other") == "kept"
    if node.companions:
        assert r.pdk_calls == COMPANION_CALLS
    else:  # the get_ctx that finds no companion table, then the classic reads
        assert r.pdk_calls == ["kong.nginx.get_ctx", "kong.nginx.get_var",
                               "kong.request.get_headers"]
    node.close()


def test_hide_credentials_strips_the_key_from_header_and_query(
        server: PluginServerProcess, kong_mode: str) -> None:
    node = node_in(kong_mode, server.socket, outcomes_config(hide_credentials=True),
                   consumers=[MOBILE])
    r = get(node, f"/flights/v1/flights?a=1&apikey={KEYS['good']}&b=2", "good")
    assert r.status == 200
    assert "apikey" not in r.upstream_headers
    assert r.upstream_query == "a=1&b=2"
    node.close()


def test_anonymous_continues_as_the_anonymous_consumer(server: PluginServerProcess,
                                                       kong_mode: str) -> None:
    anon = {"id": "9d0c1f7e-1111-4222-8333-444455556666", "username": "anon"}
    node = node_in(kong_mode, server.socket, outcomes_config(anonymous="anon"),
                   consumers=[anon, MOBILE])
    r = get(node, "/flights/v1/flights", None)
    assert (r.status, r.consumer) == (200, anon)
    assert r.upstream("X-Anonymous-Consumer") == "true"
    assert get(node, "/flights/v1/flights", "not-a-key").status == 401
    node.close()


def test_path_is_judged_as_kong_normalises_it(node: KongNode) -> None:
    # /flights/v1/%2e%2e/%2e%2e/bookings/v2/bookings normalises to /bookings/v2/bookings.
    r = get(node, "/flights/v1/%2e%2e/%2e%2e/bookings/v2/bookings", "good")
    assert (r.status, r.message) == (403, "application is not registered for this operation")


def test_absolute_form_request_line(node: KongNode) -> None:
    r = get(node, "/flights/v1/flights", "good",
            request_line="GET http://api.example.com/flights/v1/flights HTTP/1.1")
    assert (r.status, r.upstream("X-ACE-Operation-ID")) == (200, "listFlights")


def test_internal_error_is_a_500_never_a_pass(node: KongNode) -> None:
    # Kong answering a PDK call with something absurd makes the adapter fail inside.
    absurd = "kong.nginx.get_ctx" if node.companions else "kong.request.get_headers"
    r = get(node, "/flights/v1/flights", "good", answers={absurd: ["not", "a", "map"]})
    assert (r.status, r.body, r.proxied) == (500, {"message": "An unexpected error occurred"},
                                             False)
    assert get(node, "/flights/v1/flights", "good").status == 200  # and the server carries on
