"""Request confusion (SPEC §8) through the real kong-ace-server and Kong's RPC protocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kong_ace.testing import KongNode, KongRequest, PluginServerProcess, Result
from tests.core.confusion_catalog import MOBILE, MOBILE_CREDENTIAL, WEB_KEY, confusion_config

GUEST = {"id": "0a0b0c0d-1111-4222-8333-444455556666", "username": "guest"}
STRANGER = {"id": "9f9e9d9c-1111-4222-8333-444455556666", "username": "stranger"}


@pytest.fixture(scope="module")
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


@pytest.fixture
def node(server: PluginServerProcess) -> Iterator[KongNode]:
    n = KongNode(server.socket, confusion_config(), consumers=[MOBILE, GUEST, STRANGER])
    yield n
    n.close()


def send(node: KongNode, path: str, *, method: str = "GET", key: bool = True,
         headers: dict[str, Any] | None = None, **kw: Any) -> Result:
    h: dict[str, Any] = {"host": "api.example.com"}
    if key:
        h["apikey"] = WEB_KEY
    h.update(headers or {})
    return node.request(KongRequest(method=method, path=path, headers=h, **kw))


# 1, 2. Separators and fragments ------------------------------------------------------------

def test_escaped_slash_and_fragment_are_400(node: KongNode) -> None:
    r = send(node, "/files/flights/BA117%2Fmanifest.json")
    assert (r.status, r.message) == (400, "escaped slash in request path")
    r = send(node, "/files/users/7#/../export")
    assert (r.status, r.message) == (400, "fragment in request target")
    assert send(node, "/files/users/export;x").status == 400


def test_unescape_forwards_the_decoded_path(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, confusion_config(path_with_escaped_slashes_action="unescape"))
    r = send(node, "/files/users/a%2F..%2F7")
    assert (r.status, r.upstream("X-ACE-Operation-ID")) == (200, "getUser")
    assert r.upstream_path == "/files/users/7"
    assert "kong.service.request.set_path" in r.pdk_calls
    assert send(node, "/files/flights/BA117%2Fmanifest.json").status == 403  # exportManifest
    plain = send(node, "/files/users/7")
    assert "kong.service.request.set_path" not in plain.pdk_calls
    node.close()


def test_unescape_in_companion_mode_forwards_the_decoded_path(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, confusion_config(path_with_escaped_slashes_action="unescape"),
                    companions=True)
    r = send(node, "/files/users/a%2F..%2F7")
    # Still two PDK calls: ace-guard sets the path in Lua.
    assert (r.status, r.upstream("X-ACE-Operation-ID")) == (200, "getUser")
    assert r.upstream_path == "/files/users/7"
    assert r.pdk_calls == ["kong.nginx.get_ctx", "kong.nginx.set_ctx"]
    assert send(node, "/files/flights/BA117%2Fmanifest.json").status == 403  # exportManifest
    node.close()


# 5. Method overrides ----------------------------------------------------------------------

def test_method_overrides_are_stripped_before_the_upstream(node: KongNode) -> None:
    r = send(node, "/files/items/7?_method=DELETE&a=1", method="POST",
             headers={"X-HTTP-Method-Override": "DELETE", "X_HTTP_Method": "DELETE"})
    assert (r.status, r.upstream("X-ACE-Operation-ID")) == (200, "postItem")
    assert "x-http-method-override" not in r.upstream_headers
    assert "x_http_method" not in r.upstream_headers
    assert r.upstream_query == "a=1"


def test_method_override_reject_and_follow(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, confusion_config(method_override_action="reject"))
    r = send(node, "/files/items/7", method="POST", headers={"x-method-override": "DELETE"})
    assert (r.status, r.message) == (400, "method override not allowed")
    node.close()
    node = KongNode(server.socket, confusion_config(method_override_action="follow"))
    r = send(node, "/files/items/7?_method=DELETE", method="POST", key=True)
    assert (r.status, r.message) == (403, "application is not registered for this operation")
    node.close()


@pytest.mark.parametrize("companions", [False, True], ids=["classic", "companion"])
@pytest.mark.parametrize(("action", "status", "query"), [
    ("strip", 200, "a=1"), ("reject", 400, None), ("follow", 403, None)])
def test_query_override_is_seen_without_keys_in_the_query(
        server: PluginServerProcess, companions: bool, action: str, status: int,
        query: str | None) -> None:
    # Found in review: companion mode parsed the query only with key_in_query, so `_method`
    # reached a method-override upstream (deleteItem) under every action.
    config = confusion_config(key_in_query=False, method_override_action=action)
    node = KongNode(server.socket, config, companions=companions)
    r = send(node, "/files/items/7?_method=DELETE&a=1", method="POST")
    assert r.status == status
    if query is not None:
        assert (r.upstream("X-ACE-Operation-ID"), r.upstream_query) == ("postItem", query)
    node.close()


# 6. Host ----------------------------------------------------------------------------------

def test_absolute_form_host_differing_from_the_host_header_is_refused(node: KongNode) -> None:
    r = send(node, "/svc/data", key=False, headers={"host": "admin.example"},
             request_line="GET http://public.example/svc/data HTTP/1.1")
    assert (r.status, r.message) == (400, "request-line host and Host header differ")
    assert "kong.request.get_host" not in r.pdk_calls


def test_scope_follows_the_host_header(node: KongNode) -> None:
    assert send(node, "/svc/data", headers={"host": "public.example"}).status == 200
    r = send(node, "/svc/data", headers={"host": "admin.example"}, host="public.example")
    assert (r.status, r.message) == (403, "application is not registered for this operation")


# 7. Identity headers ----------------------------------------------------------------------

def test_underscore_spellings_never_reach_the_upstream(node: KongNode) -> None:
    forged = {"X_ACE_Application_ID": "forged", "x_ace-package": "forged"}
    passing = send(node, "/elsewhere", key=False, headers=forged)
    assert passing.proxied
    assert not {"x_ace_application_id", "x_ace-package"} & set(passing.upstream_headers)
    admitted = send(node, "/files/users/7", headers={
        **forged, "X-Consumer-ID": "forged", "X_Consumer_Username": "forged",
        "x-credential-identifier": "forged", "X-Anonymous-Consumer": "true"})
    assert admitted.upstream("X-ACE-Application-ID") == "web-app"
    leaked = {"x_ace_application_id", "x_ace-package", "x-consumer-id", "x_consumer_username",
              "x-credential-identifier", "x-anonymous-consumer"} & set(admitted.upstream_headers)
    assert not leaked


def _many(n: int) -> dict[str, str]:
    return {f"x-filler-{i}": "v" for i in range(n)}


def test_a_forged_header_past_the_100th_is_cleared_on_pass_through(node: KongNode) -> None:
    r = send(node, "/elsewhere", key=False,
             headers={**_many(100), "X_ACE_Application_ID": "forged"})
    assert r.proxied and "x_ace_application_id" not in r.upstream_headers


def test_too_many_headers_under_an_api_are_refused(node: KongNode) -> None:
    r = send(node, "/files/users/7", headers=_many(100))
    assert (r.status, r.message) == (400, "too many request headers")


# 8. Another plugin's anonymous consumer -----------------------------------------------------

def test_key_auth_anonymous_consumer_does_not_make_ace_stand_aside(
        server: PluginServerProcess) -> None:
    node = KongNode(server.socket, confusion_config(anonymous="guest"),
                    consumers=[MOBILE, GUEST, STRANGER])
    # key-auth with `anonymous = stranger` let the request through as its anonymous consumer:
    # no credential, X-Anonymous-Consumer: true (key-auth handler.lua set_consumer).
    r = send(node, "/files/items/7", method="DELETE", key=False, consumer=STRANGER,
             headers={"X-Anonymous-Consumer": "true"})
    assert r.consumer == GUEST  # ACE's own anonymous consumer, not an authenticated stranger
    # A consumer mapped to an application, but with no credential: not that application.
    r = send(node, "/files/users/7", key=False, consumer=MOBILE)
    assert "kong.client.get_credential" in r.pdk_calls
    assert r.upstream("X-ACE-Application-ID") != "mobile-app"
    r = send(node, "/files/users/7", key=False, consumer=MOBILE, credential=MOBILE_CREDENTIAL)
    assert r.upstream("X-ACE-Application-ID") == "mobile-app"
    node.close()


def test_mapped_consumer_without_credential_needs_a_key(node: KongNode) -> None:
    r = send(node, "/files/users/7", key=False, consumer=MOBILE)
    assert (r.status, r.message) == (401, "No API key found in request")
