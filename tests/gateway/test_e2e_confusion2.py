"""Request confusion, second round (issue 20), through the real kong-ace-server, both modes.

Classic mode reads the request over Kong's RPC (and the body of a POST form under an API with
one get_raw_body); companion mode gets it from ace-context's table (the body read in Lua).
Tokens whose JOSE header is hostile are 401 quietly; attacker-controlled strings reach the
server's log escaped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kong_ace.testing import KongNode, KongRequest, PluginServerProcess, Result
from tests.core.confusion_catalog import MAPPED_ID, MOBILE, WEB_KEY, confusion2_config
from tests.core.test_confusion2 import MULTIPART, multipart
from tests.core.test_tokens import auth_config
from tests.idp import IdP

FORM = "application/x-www-form-urlencoded"
EVE = {"id": "0e0e0e0e-1111-4222-8333-444455556666", "username": "eve", "custom_id": "mobile"}
UUID_NAMED = {"id": "0e0e0e0e-1111-4222-8333-444455556667", "username": MAPPED_ID}


@pytest.fixture(scope="module")
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess(args=("-vv",)) as srv:
        yield srv


@pytest.fixture(params=[False, True], ids=["classic", "companion"])
def node(request: pytest.FixtureRequest, server: PluginServerProcess) -> Iterator[KongNode]:
    n = KongNode(server.socket, confusion2_config(), consumers=[MOBILE, EVE, UUID_NAMED],
                 companions=request.param)
    yield n
    n.close()


def send(node: KongNode, method: str, path: str, *, key: bool = True,
         headers: dict[str, Any] | None = None, **kw: Any) -> Result:
    h: dict[str, Any] = {"host": "api.example.com", **({"apikey": WEB_KEY} if key else {})}
    h.update(headers or {})
    return node.request(KongRequest(method=method, path=path, headers=h, **kw))


def calls(node: KongNode, r: Result) -> int:
    return len(r.pdk_calls)


# 1. PHP argument names -----------------------------------------------------------------------

@pytest.mark.parametrize("arg", [".method", "+_method", "%20_method", "_method%00x", "%2Emethod",
                                 "_method[]"])
def test_every_php_spelling_of_method_is_stripped(node: KongNode, arg: str) -> None:
    r = send(node, "POST", f"/files/items/7?{arg}=DELETE&a=1")
    assert (r.status, r.upstream("X-ACE-Operation-ID"), r.upstream_query) == (200, "postItem",
                                                                              "a=1")


# 2. Body overrides --------------------------------------------------------------------------

@pytest.mark.parametrize(("ctype", "body"), [
    (FORM, "a=1&_method=DELETE"), (FORM, ".method=DELETE"), (MULTIPART,
                                                             multipart("_method", "DELETE")),
    ("application/json", '{"_method":"DELETE"}'),
])
def test_a_body_override_is_400(node: KongNode, ctype: str, body: str) -> None:
    r = send(node, "POST", "/files/items/7", headers={"content-type": ctype}, body=body)
    assert (r.status, r.message) == (400, "method override in request body")
    # One read more in classic mode (the body), none in companion mode.
    want = ["kong.nginx.get_ctx", "kong.nginx.set_ctx"] if node.companions else [
        "kong.nginx.get_ctx", "kong.nginx.get_var", "kong.request.get_headers",
        "kong.request.get_raw_body", "kong.response.exit"]
    assert r.pdk_calls == want


def test_a_plain_form_post_and_a_spilled_upload_pass(node: KongNode) -> None:
    r = send(node, "POST", "/files/items/7", headers={"content-type": FORM}, body="a=1")
    assert (r.status, r.upstream("X-ACE-Operation-ID")) == (200, "postItem")
    r = send(node, "POST", "/uploads/a.bin", headers={"content-type": MULTIPART},
             body=multipart("t", "x", ) + "x" * 70_000, body_in_file=True)
    assert (r.status, r.upstream("X-ACE-Operation-ID")) == (200, "upload")
    assert "kong.request.get_raw_body" not in r.pdk_calls  # too large to read in classic mode


def test_a_body_that_cannot_be_inspected_is_400_where_it_could_reach_another_operation(
        node: KongNode) -> None:
    big = multipart("_method", "DELETE") + "x" * 70_000
    r = send(node, "POST", "/files/items/7", headers={"content-type": MULTIPART}, body=big,
             body_in_file=True)
    assert (r.status, r.message) == (400, "request body cannot be inspected for a method "
                                          "override")
    r = send(node, "POST", "/files/items/7", headers={"content-type": FORM}, body="a=1",
             chunked=True)
    # Classic mode does not read a chunked body; ace-context has it buffered.
    assert r.status == (200 if node.companions else 400)


def test_a_small_spilled_body_is_read_from_its_file_in_classic_mode(node: KongNode) -> None:
    r = send(node, "POST", "/files/items/7", headers={"content-type": FORM},
             body="_method=DELETE", body_in_file=True)
    want = "request body cannot be inspected for a method override" if node.companions else \
        "method override in request body"
    assert (r.status, r.message, r.errors) == (400, want, [])


# 3. Case-insensitive routers ----------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "key"), [
    ("GET", "/files/users/Export", True), ("DELETE", "/shop/orders/1", False),
])
def test_a_case_folded_path_reaching_another_operation_is_400(node: KongNode, method: str,
                                                              path: str, key: bool) -> None:
    r = send(node, method, path, key=key)
    assert (r.status, r.message) == (400, "ambiguous request path")


def test_path_case_insensitive_decides_on_the_folded_path(server: PluginServerProcess) -> None:
    config = confusion2_config(path_case={"shop": "insensitive"})
    for companions in (False, True):
        n = KongNode(server.socket, config, companions=companions)
        assert send(n, "DELETE", "/shop/orders/1", key=False).status == 401
        assert send(n, "GET", "/shop/ORDERS/1").upstream("X-ACE-Operation-ID") == "getOrder"
        n.close()


# 4. Wildcard hosts ----------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["a.b.admin.example.com", "admin.example.org"])
def test_wildcard_hosts(node: KongNode, host: str) -> None:
    r = send(node, "GET", "/console/stats", key=False, headers={"host": host})
    assert (r.status, r.message) == (401, "No API key found in request")


# 5. Consumer namespaces ---------------------------------------------------------------------

@pytest.mark.parametrize("consumer", [EVE, UUID_NAMED], ids=["custom_id", "uuid-username"])
def test_another_consumer_is_not_the_application(node: KongNode,
                                                 consumer: dict[str, Any]) -> None:
    r = send(node, "GET", "/files/users/7", key=False, consumer=consumer,
             credential={"id": "c-1"})
    assert (r.status, r.message) == (401, "No API key found in request")
    r = send(node, "GET", "/files/users/7", key=False, consumer=MOBILE, credential={"id": "c"})
    assert (r.status, r.upstream("X-ACE-Application-ID")) == (200, "mobile-app")


# 7. Kong's normalised path read once, escapes in any case ------------------------------------

@pytest.mark.parametrize(("raw", "message"), [
    ("/files/users/x/%%32%65%%32%65/export", "ambiguous request path"),
    ("/files/users/a%%32%66export", "escaped slash in request path"),
    ("/files/users/export%%33%62x", "path parameters (';') in request path"),
])
def test_escapes_left_by_kongs_one_decoding_pass(server: PluginServerProcess, raw: str,
                                                 message: str) -> None:
    # Kong 3.9.1's nginx refuses '%%' itself; one proxy hop away it arrives: nginx=False.
    for companions in (False, True):
        n = KongNode(server.socket, confusion2_config(), companions=companions, nginx=False)
        r = send(n, "GET", raw)
        assert (r.status, r.message) == (400, message)
        n.close()


# 6. Hostile token headers --------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("companions", [False, True], ids=["classic", "companion"])
def test_a_hostile_token_is_401_quietly_and_logged_escaped(companions: bool) -> None:
    with IdP() as idp, PluginServerProcess(args=("-vv",)) as srv:
        n = KongNode(srv.socket, auth_config(idp), companions=companions)
        nested = _b64(b'{"alg":' + b"[" * 3000 + b"]" * 3000 + b"}")
        claims = _b64(json.dumps({"iss": "evil\nERROR forged line"}).encode())
        for token in (f"{nested}.{claims}.c2ln",
                      f"{_b64(json.dumps({'alg': 'RS256'}).encode())}.{claims}.c2ln"):
            r = n.request(KongRequest(path="/flights/v1/flights", headers={
                "host": "api.example.com", "authorization": f"Bearer {token}"}))
            assert (r.status, r.errors) == (401, [])
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="kong", error="invalid_token"'
        n.close()
        log = srv.log
    assert "Traceback" not in log and "RecursionError" not in log
    assert "\nERROR forged line" not in log
    assert "evil\\nERROR forged line" in log  # the debug line, escaped
