"""Request confusion, second round (issue 20), end to end through a real Kong 3.9.1.

The upstream records what it received; a small reader then applies what real frameworks do
with it: PHP's argument names and Laravel's `_method` (query, form, multipart and JSON bodies),
a case-insensitive router (Express, ASP.NET Core). Every request ACE admits must be, under each
reading, an operation web-app is entitled to; everything else must be refused before the
upstream. Items 1-5 of the issue, both modes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, unquote_plus

import pytest

from tests.core.confusion_catalog import MAPPED_ID, MOBILE, WEB_KEY, confusion2_config
from tests.php import php_name
from tests.realkong.kong import KongNode, Upstream, ace_config, header

FORM = "application/x-www-form-urlencoded"
# What web-app (package basic) may run; anything else admitted is a hole.
ENTITLED = {"getUser", "getFlight", "getReport", "getJob", "getItem", "postItem", "getOrder",
            "upload"}
# The upstream's routes (the catalog's operations), as a router reads them.
ROUTES = [
    ("GET", "/files/users/export", "exportUsers"), ("GET", "/files/users/[^/]+", "getUser"),
    ("GET", "/files/items/[^/]+", "getItem"), ("POST", "/files/items/[^/]+", "postItem"),
    ("DELETE", "/files/items/[^/]+", "deleteItem"),
    ("GET", "/shop/Orders/[^/]+", "getOrder"), ("DELETE", "/shop/Orders/[^/]+", "deleteOrder"),
    ("GET", "/console/stats", "adminStats"), ("POST", "/uploads/[^/]+", "upload"),
]
EVE = {"id": "0e0e0e0e-1111-4222-8333-444455556666", "username": "eve", "custom_id": "mobile",
       "keyauth_credentials": [{"key": "eve-key"}]}
UUID_NAMED = {"id": "0e0e0e0e-1111-4222-8333-444455556667", "username": MAPPED_ID,
              "keyauth_credentials": [{"key": "uuid-named-key"}]}
MOBILE_CONSUMER = {**MOBILE, "keyauth_credentials": [{"key": "mobile-key"}]}


# --- the upstream's readings ------------------------------------------------------------------



def php_args(raw: str) -> dict[str, str]:
    """$_GET / $_POST (urlencoded) as PHP fills them: later names win."""
    args = {}
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        key = php_name(unquote_plus(name))
        if key:
            args[key] = unquote_plus(value)
    return args


def body_args(record: dict[str, Any]) -> dict[str, Any]:
    """What Laravel's $request->request holds for the body (form, multipart, JSON)."""
    ctype = (header(record, "Content-Type") or [""])[0]
    body = record["body"]
    if ctype.lower().startswith(FORM):
        return php_args(body)
    if ctype.lower().startswith("multipart/form-data"):
        boundary = ctype.split("boundary=", 1)[1].strip('"')
        out = {}
        for part in body.split("--" + boundary)[1:]:
            head, _, value = part.partition("\r\n\r\n")
            m = re.search(r'name="([^"]*)"', head)
            if m and "filename=" not in head:
                out[php_name(m.group(1))] = value.removesuffix("\r\n")
        return out
    if "/json" in ctype or "+json" in ctype:
        doc = json.loads(body or "null")
        return doc if isinstance(doc, dict) else {}
    return {}


def laravel_method(record: dict[str, Any]) -> str:
    """Symfony Request::getMethod as Laravel runs it (http_method_override on)."""
    method = record["method"]
    if method != "POST":
        return method
    override = header(record, "X-HTTP-Method-Override")
    if override:
        return override[0].upper()
    value = body_args(record).get("_method", php_args(record["query"]).get("_method", "POST"))
    return value.upper() if isinstance(value, str) else method


def operation(method: str, path: str, *, fold: bool) -> str | None:
    """The upstream route a (method, decoded path) reaches; Express folds case."""
    for m, pattern, op in ROUTES:
        if m == method and re.fullmatch(pattern, path, re.I if fold else 0):
            return op
    return None


def readings(record: dict[str, Any]) -> set[str | None]:
    """Every operation a real upstream may run for what it received."""
    path = unquote(record["path"])
    method = laravel_method(record)
    return {operation(m, path, fold=f) for m in (record["method"], method) for f in (False, True)}


def test_the_reader_models_php_and_laravel() -> None:
    assert [php_name(n) for n in (".method", " _method", "_method\0x", "a[b", "_method[]", "[x")
            ] == ["_method", "_method", "_method", "a_b", "_method", ""]
    rec = {"method": "POST", "query": "%2Emethod=delete", "body": "", "headers": [],
           "path": "/files/items/7"}
    assert laravel_method(rec) == "DELETE" and readings(rec) == {"postItem", "deleteItem"}


# --- the node ---------------------------------------------------------------------------------

def kong_config(upstream_url: str, **ace: Any) -> dict[str, Any]:
    config = ace_config(upstream_url, confusion2_config(**ace),
                        consumers=[MOBILE_CONSUMER, EVE, UUID_NAMED])
    # key-auth authenticates Kong consumers on /files/users/7 only (item 5).
    config["services"][0]["routes"].append(
        {"name": "keyed", "paths": ["/files/users/7"], "strip_path": False,
         "plugins": [{"name": "key-auth", "config": {"key_names": ["x-consumer-key"]}}]})
    return config


@pytest.fixture(scope="module", params=["companion", "classic"])
def node(request: pytest.FixtureRequest, kong_node: Callable[..., KongNode],
         upstream: Upstream) -> Iterator[KongNode]:
    yield kong_node(kong_config(upstream.url), mode=request.param)


def send(node: KongNode, upstream: Upstream, method: str, target: str,
         headers: dict[str, str] | None = None, body: str | bytes | None = None,
         key: bool = True) -> tuple[int, Any, dict[str, Any] | None]:
    """(status, JSON body, what the upstream received or None)."""
    upstream.clear()
    h = {"Host": "api.example.com", **({"apikey": WEB_KEY} if key else {}), **(headers or {})}
    r = node.request(method, target, h, body)
    got = upstream.received
    assert len(got) == (1 if r.status == 200 else 0), (r.status, r.body)
    return r.status, r.json, got[0] if got else None


def admitted_and_entitled(seen: dict[str, Any] | None) -> None:
    assert seen is not None
    assert readings(seen) <= ENTITLED, readings(seen)


# 1. PHP argument names ------------------------------------------------------------------------

@pytest.mark.parametrize("arg", [".method", "+_method", "%20_method", "_method%00x", "%2Emethod",
                                 "_method[]"])
def test_every_php_spelling_of_method_is_stripped(node: KongNode, upstream: Upstream,
                                                  arg: str) -> None:
    # Before: ACE stripped `_method` only; Laravel ran deleteItem for these spellings.
    status, _, seen = send(node, upstream, "POST", f"/files/items/7?{arg}=DELETE&a=1")
    assert status == 200
    admitted_and_entitled(seen)
    assert seen is not None and seen["query"] == "a=1"


# 2. `_method` in a POST body --------------------------------------------------------------------

MULTIPART = "multipart/form-data; boundary=XyZ"


def multipart(name: str, value: str, filler: int = 0) -> str:
    return (f'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n{'x' * filler}\r\n"
            f'--XyZ\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            f"--XyZ--\r\n")


@pytest.mark.parametrize(("ctype", "body"), [
    (FORM, "a=1&_method=DELETE"), (FORM, ".method=DELETE"), (FORM, "_%6Dethod=DELETE"),
    (MULTIPART, multipart("_method", "DELETE")), ("application/json", '{"_method":"DELETE"}'),
])
def test_a_body_override_is_400(node: KongNode, upstream: Upstream, ctype: str,
                                body: str) -> None:
    # Before: admitted as postItem; Laravel ran deleteItem.
    status, answer, _ = send(node, upstream, "POST", "/files/items/7", {"Content-Type": ctype},
                             body)
    assert (status, answer) == (400, {"message": "method override in request body"})


def test_ordinary_form_posts_and_uploads_pass(node: KongNode, upstream: Upstream) -> None:
    status, _, seen = send(node, upstream, "POST", "/files/items/7", {"Content-Type": FORM},
                           "a=1&method=x&_method=POST")
    assert status == 200
    admitted_and_entitled(seen)
    assert seen is not None and seen["body"] == "a=1&method=x&_method=POST"
    # A large upload (spilled to a file: more than client_body_buffer_size, 8k) to a POST-only
    # path reaches the upstream whole.
    body = multipart("title", "x", filler=64 * 1024)
    status, _, seen = send(node, upstream, "POST", "/uploads/a.bin",
                           {"Content-Type": MULTIPART}, body)
    assert status == 200 and seen is not None and seen["body"] == body


def test_a_large_body_where_an_override_could_reach_another_operation_is_400(
        node: KongNode, upstream: Upstream) -> None:
    body = multipart("_method", "DELETE", filler=64 * 1024)
    status, answer, _ = send(node, upstream, "POST", "/files/items/7",
                             {"Content-Type": MULTIPART}, body)
    assert (status, answer) == (
        400, {"message": "request body cannot be inspected for a method override"})


# 3. Case-insensitive routers -------------------------------------------------------------------

@pytest.mark.parametrize(("method", "target", "key"), [
    ("GET", "/files/users/Export", True), ("DELETE", "/shop/orders/1", False),
    ("GET", "/files/Users/7", True), ("DELETE", "/SHOP/Orders/1", False),
])
def test_a_case_folded_path_reaching_another_operation_is_400(
        node: KongNode, upstream: Upstream, method: str, target: str, key: bool) -> None:
    # Before: getUser for ACE and exportUsers for Express; DELETE /shop/orders/1 passed with
    # no key at all.
    status, answer, _ = send(node, upstream, method, target, key=key)
    assert (status, answer) == (400, {"message": "ambiguous request path"})


def test_the_same_operation_in_any_case_passes(node: KongNode, upstream: Upstream) -> None:
    status, _, seen = send(node, upstream, "GET", "/shop/Orders/1")
    assert status == 200
    admitted_and_entitled(seen)


# 4. Kong's wildcard hosts ----------------------------------------------------------------------

@pytest.mark.parametrize("host", ["a.b.admin.example.com", "admin.example.org"])
def test_wildcard_hosts_are_read_as_kongs_router_reads_them(node: KongNode, upstream: Upstream,
                                                            host: str) -> None:
    # Before: both passed if_present with no key (adminStats reached with no credential).
    status, answer, _ = send(node, upstream, "GET", "/console/stats", {"Host": host}, key=False)
    assert (status, answer) == (401, {"message": "No API key found in request"})
    status, answer, _ = send(node, upstream, "GET", "/console/stats", {"Host": host})
    assert status == 403


# 5. Consumer namespaces ------------------------------------------------------------------------

def test_another_consumers_custom_id_or_username_is_not_the_application(
        node: KongNode, upstream: Upstream) -> None:
    # Before: eve (custom_id "mobile") became mobile-app, and a consumer named like id-app's
    # consumer id became id-app.
    for key in ("eve-key", "uuid-named-key"):
        status, answer, _ = send(node, upstream, "GET", "/files/users/7",
                                 {"x-consumer-key": key}, key=False)
        assert (status, answer) == (401, {"message": "No API key found in request"})
    status, _, seen = send(node, upstream, "GET", "/files/users/7",
                           {"x-consumer-key": "mobile-key"}, key=False)
    assert status == 200 and seen is not None
    assert header(seen, "X-ACE-Application-ID") == ["mobile-app"]


def test_no_internal_error_in_kongs_log(node: KongNode) -> None:
    log = node.error_log()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]
