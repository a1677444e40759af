"""Request confusion, second round (issue 20), through the core: what real upstreams still read.

Each test names what the old code did. PHP renames argument names, Laravel reads `_method` from
a POST body, Express and ASP.NET Core route ignoring case, Kong's router reads wildcard hosts at
any depth, consumer references have one namespace each, token headers can be hostile, and
Kong's path is normalised once.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kong_ace import ConfigError, Enforcer, Request
from kong_ace.core import decision as d
from kong_ace.core import target as t
from kong_ace.core.normalize import normalize_path, remove_dots
from kong_ace.core.readings import body_kind, body_overrides, php_name

from .confusion_catalog import MAPPED_ID, WEB_KEY, confusion2_config

KEY = {"apikey": WEB_KEY}
FORM = "application/x-www-form-urlencoded"


def enf(**overrides: Any) -> Enforcer:
    return Enforcer(confusion2_config(**overrides))


def post(path: str = "/files/items/7", *, query: dict[str, Any] | None = None,
         content_type: str | None = None, body: Any = None, headers: dict[str, Any] | None = None,
         **kw: Any) -> Request:
    h = dict(KEY if headers is None else headers)
    if content_type is not None:
        h["content-type"] = content_type
    return Request("POST", path, headers=h, query=query or {}, body=body, **kw)


# 1. PHP argument names -----------------------------------------------------------------------

PHP_SPELLINGS = [".method", " _method", " .method", "_method\x00x", "_method[]", "_method[a]"]


@pytest.mark.parametrize(("raw", "php"), [
    (".method", "_method"), ("  _method", "_method"), ("_method\x00junk", "_method"),
    ("a.b c", "a_b_c"), ("_method[", "_method_"), ("_method[]", "_method["),
    ("_method[x.y]", "_method["), ("[x]", ""), ("a[b.c", "a_b_c"),
])
def test_php_name_follows_php_register_variable(raw: str, php: str) -> None:
    assert php_name(raw) == php


@pytest.mark.parametrize("name", PHP_SPELLINGS)
def test_every_php_spelling_of_method_is_stripped(name: str) -> None:
    # Before: only `_method` itself was stripped; Laravel ran DELETE (deleteItem) on `.method`.
    dec = enf().decide(post(query={name: ["DELETE"], "a": ["1"]}))
    assert dec.allowed and dec.operation_id == "postItem"
    assert dec.clear_query == (name,)


@pytest.mark.parametrize("name", PHP_SPELLINGS)
def test_every_php_spelling_is_rejected_under_reject(name: str) -> None:
    dec = enf(method_override_action="reject").decide(post(query={name: ["DELETE"]}))
    assert (dec.status, dec.message) == (400, t.METHOD_OVERRIDE)


@pytest.mark.parametrize("name", [".method", " _method", "_method\x00x"])
def test_every_php_spelling_is_followed_under_follow(name: str) -> None:
    # Before: follow ignored them and admitted postItem; the upstream ran deleteItem.
    dec = enf(method_override_action="follow").decide(post(query={name: ["DELETE"]}))
    assert (dec.status, dec.operation_id) == (403, "deleteItem")


def test_an_array_override_is_no_method_under_follow() -> None:
    dec = enf(method_override_action="follow").decide(post(query={"_method[]": ["DELETE"]}))
    assert (dec.status, dec.message) == (400, t.METHOD_OVERRIDE)


def test_names_php_does_not_read_as_method_stay() -> None:
    dec = enf().decide(post(query={"_method_": ["DELETE"], "x_method": ["DELETE"],
                                   "_METHOD": ["DELETE"]}))
    assert dec.allowed and dec.clear_query == ()


# 2. `_method` in a POST body -----------------------------------------------------------------

MULTIPART = "multipart/form-data; boundary=XyZ"


def multipart(name: str, value: str) -> str:
    return (f'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\nhello\r\n"
            f'--XyZ\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n--XyZ--\r\n')


BODIES = [
    (FORM, "a=1&_method=DELETE"),
    (FORM + "; charset=UTF-8", "a=1&.method=delete"),
    (FORM, "_%6Dethod=DELETE"),
    (FORM, "+_method=PUT"),
    (MULTIPART, multipart("_method", "DELETE")),
    (MULTIPART, multipart(".method", "DELETE")),
    ("application/json", '{"_method": "DELETE"}'),
    ("application/vnd.api+json", '{"_\\u006dethod": "PATCH"}'),
]


@pytest.mark.parametrize(("content_type", "body"), BODIES)
def test_a_body_override_naming_another_method_is_400(content_type: str, body: str) -> None:
    # Before: ACE read no bodies and admitted postItem; Laravel ran the named method.
    dec = enf().decide(post(content_type=content_type, body=body))
    assert (dec.status, dec.message) == (400, t.BODY_OVERRIDE)


@pytest.mark.parametrize(("content_type", "body"), BODIES[:1] + BODIES[4:5] + BODIES[6:7])
def test_follow_decides_on_the_method_the_body_names(content_type: str, body: str) -> None:
    dec = enf(body_method_override_action="follow").decide(
        post(content_type=content_type, body=body))
    assert (dec.status, dec.operation_id) == (403, "deleteItem")


@pytest.mark.parametrize(("content_type", "body"), [
    (FORM, "_method=POST&a=1"), (FORM, "a=1&b=2"), (MULTIPART, multipart("method", "DELETE")),
    ("application/json", '{"method": "DELETE"}'), ("text/plain", "_method=DELETE"),
    (FORM, ""),
])
def test_ordinary_bodies_pass(content_type: str, body: str) -> None:
    dec = enf().decide(post(content_type=content_type, body=body))
    assert dec.allowed and dec.operation_id == "postItem"


def test_a_body_override_is_read_on_post_only_and_under_an_api_only() -> None:
    put = Request("PUT", "/files/items/7", headers={**KEY, "content-type": FORM},
                  body="_method=DELETE")
    assert enf().decide(put).status is None or enf().decide(put).status != 400
    elsewhere = post("/elsewhere", headers={}, content_type=FORM, body="_method=DELETE")
    assert enf().decide(elsewhere).allowed


def test_follow_with_a_query_override_that_disagrees_is_400() -> None:
    dec = enf(method_override_action="follow", body_method_override_action="follow").decide(
        post(query={"_method": ["GET"]}, content_type=FORM, body="_method=DELETE"))
    assert (dec.status, dec.message) == (400, t.METHOD_OVERRIDE)


def test_an_uninspected_body_where_another_method_exists_is_400() -> None:
    # /files/items/{id} has GET, POST and DELETE: a spilled body may name any of them.
    for body, spilled in ((None, True), (None, False)):
        dec = enf().decide(post(content_type=FORM, body=body, body_spilled=spilled))
        assert (dec.status, dec.message) == (400, t.UNINSPECTED_BODY)


def test_an_uninspected_upload_to_a_post_only_path_passes() -> None:
    # The ordinary large multipart upload: no other operation an override could reach.
    dec = enf().decide(post("/uploads/a.bin", content_type=MULTIPART, body_spilled=True))
    assert dec.allowed and dec.operation_id == "upload"


def test_uninspected_body_action_reject_and_allow() -> None:
    spilled = post("/uploads/a.bin", content_type=MULTIPART, body_spilled=True)
    assert enf(uninspected_body_action="reject").decide(spilled).status == 400
    spilled = post(content_type=FORM, body_spilled=True)
    assert enf(uninspected_body_action="allow").decide(spilled).operation_id == "postItem"


def test_new_actions_are_validated() -> None:
    with pytest.raises(ConfigError, match="body_method_override_action"):
        enf(body_method_override_action="strip")
    with pytest.raises(ConfigError, match="uninspected_body_action"):
        enf(uninspected_body_action="ignore")
    with pytest.raises(ConfigError, match=r"apis\[3\].path_case"):
        enf(path_case={"shop": "folded"})


def test_body_readers() -> None:
    assert body_kind(["Multipart/Form-Data; boundary=a"]) == "multipart"
    assert body_kind("application/x-www-form-urlencoded;charset=x") == "form"
    assert body_kind("text/json; x") == "json" and body_kind("text/plain") is None
    assert body_overrides("multipart", multipart("_method", "DELETE"), "multipart/form-data")\
        is None  # no boundary: not understood, treated as uninspected
    assert body_overrides("json", "[" * 100_000 + "]" * 100_000 + "method", "") is None


# 3. Case-insensitive routers ----------------------------------------------------------------

def test_a_case_folded_path_reaching_another_operation_is_400() -> None:
    # Before: getUser ({id} = Export) for ACE; Express runs exportUsers.
    dec = enf().decide(Request("GET", "/files/users/Export", headers=KEY))
    assert (dec.status, dec.message) == (400, t.AMBIGUOUS_PATH)


def test_a_case_folded_path_reaching_an_operation_the_exact_one_misses_is_400() -> None:
    # Before: DELETE /shop/orders/1 matched nothing (`/Orders/{id}`) and passed with no key.
    dec = enf().decide(Request("DELETE", "/shop/orders/1", headers={}))
    assert (dec.status, dec.message) == (400, t.AMBIGUOUS_PATH)
    assert enf().decide(Request("GET", "/files/Users/7", headers=KEY)).status == 400


def test_the_same_operation_under_both_readings_passes() -> None:
    assert enf().decide(Request("GET", "/shop/Orders/1", headers=KEY)).operation_id == "getOrder"
    assert enf().decide(Request("GET", "/files/users/7", headers=KEY)).operation_id == "getUser"
    assert enf().decide(Request("GET", "/Elsewhere/X", headers={})).allowed


def test_path_case_insensitive_decides_on_the_folded_path() -> None:
    e = enf(path_case={"shop": "insensitive"})
    assert (e.decide(Request("DELETE", "/shop/orders/1", headers={})).status,
            e.decide(Request("DELETE", "/shop/ORDERS/1", headers=KEY)).status) == (401, 403)
    assert e.decide(Request("GET", "/shop/orders/1", headers=KEY)).operation_id == "getOrder"


def test_path_case_sensitive_skips_the_check() -> None:
    e = enf(path_case={"files": "sensitive", "shop": "sensitive"})
    assert e.decide(Request("GET", "/files/users/Export", headers=KEY)).operation_id == "getUser"
    assert e.decide(Request("DELETE", "/shop/orders/1", headers={})).allowed  # no operation
    assert e.catalog.case is not None  # the other APIs are still read both ways


def test_templates_that_fold_together() -> None:
    config = confusion2_config()
    config["apis"][3]["operations"].append(
        {"method": "GET", "path": "/orders/{id}", "operation_id": "getOrderLower"})
    e = Enforcer(config)  # unknown: both readings of either spelling are ambiguous
    assert e.decide(Request("GET", "/shop/orders/1", headers=KEY)).status == 400
    assert e.decide(Request("GET", "/shop/Orders/1", headers=KEY)).status == 400
    config["apis"][3]["path_case"] = "insensitive"
    with pytest.raises(ConfigError, match=r"apis\[3\].path_case.*case-insensitive upstream"):
        Enforcer(config)


def test_the_fold_check_only_runs_where_needed() -> None:
    lower = confusion2_config()
    lower["apis"] = [a for a in lower["apis"] if a["name"] != "shop"]
    lower["packages"][0]["operations"] = [o for o in lower["packages"][0]["operations"]
                                          if o["api"] != "shop"]
    case = Enforcer(lower).catalog.case
    assert case is not None and not case.always
    assert not case.needed("/files/users/7") and case.needed("/files/users/Export")
    case = enf().catalog.case  # /shop/Orders/{id}: a lower-case path may differ
    assert case is not None and case.always and case.upper_segments == {"orders"}
    assert case.needed("/shop/orders/1") and not case.needed("/files/users/7")
    # Only paths that hold a folded capitalised literal pay for the second lookup.
    e = Enforcer({"apis": [{"name": "gh", "operations": [
        {"method": "GET", "path": "/orgs/{org}/projectsV2/{n}"},
        {"method": "GET", "path": "/orgs/{org}/{kind}/{n}"},
        {"method": "GET", "path": "/files/{name}.JSON"}]}]})
    case = e.catalog.case
    assert case is not None and not case.needed("/orgs/a/projects/1")
    assert case.needed("/orgs/a/projectsv2/1") and case.needed("/files/a.json")
    d = e.decide(Request("GET", "/orgs/a/projectsv2/1"))
    assert (d.status, d.message) == (400, t.AMBIGUOUS_PATH)  # {kind} exactly, projectsV2 folded


# 4. Kong's wildcard hosts -------------------------------------------------------------------

@pytest.mark.parametrize("host", ["x.admin.example.com", "a.b.admin.example.com",
                                  "A.B.Admin.Example.com:8443", "admin.example.org",
                                  "admin.example.co.uk."])
def test_wildcard_hosts_match_as_kongs_router_does(host: str) -> None:
    # Before: a.b.admin.example.com and admin.example.org passed if_present with no key.
    dec = enf().decide(Request("GET", "/console/stats", headers={}, host=host))
    assert (dec.status, dec.operation_id) == (401, "adminStats")


@pytest.mark.parametrize("host", ["admin.examplecom", "xadmin.example.com", "admin.example",
                                  "example.com"])
def test_hosts_outside_the_wildcards_are_out_of_scope(host: str) -> None:
    assert enf().decide(Request("GET", "/console/stats", headers={}, host=host)).allowed


# 5. Consumer namespaces --------------------------------------------------------------------

def test_a_custom_id_equal_to_the_mapped_username_is_not_the_application() -> None:
    # Before: any consumer whose custom_id was "mobile" became mobile-app.
    other = {"id": "0e0e0e0e-1111-4222-8333-444455556666", "username": "eve",
             "custom_id": "mobile"}
    dec = enf().decide(Request("GET", "/files/users/7", headers={}, consumer=other,
                               credential=True))
    assert (dec.status, dec.application_id) == (401, None)
    mobile = {"id": "5d6e7f80-1111-4222-8333-999900001111", "username": "mobile"}
    ok = enf().decide(Request("GET", "/files/users/7", headers={}, consumer=mobile,
                              credential=True))
    assert ok.allowed and ok.application_id == "mobile-app"


def test_a_uuid_reference_names_the_consumer_id_only() -> None:
    by_name = {"id": "0e0e0e0e-1111-4222-8333-444455556666", "username": MAPPED_ID}
    by_custom = {"id": "0e0e0e0e-1111-4222-8333-444455556667", "username": "x",
                 "custom_id": MAPPED_ID}
    for consumer in (by_name, by_custom):
        dec = enf().decide(Request("GET", "/files/users/7", headers={}, consumer=consumer,
                                   credential=True))
        assert dec.application_id is None and dec.status == 401
    owner = {"id": MAPPED_ID.upper(), "username": "whoever"}
    dec = enf().decide(Request("GET", "/files/users/7", headers={}, consumer=owner,
                               credential=True))
    assert dec.application_id == "id-app"


def test_a_username_anonymous_reference_is_not_matched_by_custom_id() -> None:
    e = enf(anonymous="guest")
    impostor = {"id": "0e0e0e0e-1111-4222-8333-444455556666", "username": "eve",
                "custom_id": "guest"}
    assert not e.catalog.is_anonymous(impostor)
    assert e.catalog.is_anonymous({"id": "1", "username": "guest"})


# 7. One normalising pass, case-insensitive escapes, linear dot removal ---------------------

@pytest.mark.parametrize(("raw", "message"), [
    ("/files/users/x/%%32%65%%32%65/export", t.AMBIGUOUS_PATH),  # Kong: /x/%2e%2e/export
    ("/files/users/a%%32%66export", t.ESCAPED_SLASH),  # Kong: a%2fexport
    ("/files/users/export%%33%62x", t.PATH_PARAMETERS),  # Kong: export%3bx
    ("/files/users/a%%35%63export", t.ESCAPED_SLASH),  # Kong: a%5cexport
])
def test_kongs_normalised_path_is_read_once_and_its_escapes_in_any_case(raw: str,
                                                                       message: str) -> None:
    kong = normalize_path(raw)
    for r in (Request("GET", kong, headers=KEY, normalized=True),
              Request("GET", raw, headers=KEY)):
        dec = enf().decide(r)
        assert (dec.status, dec.message) == (400, message)


def test_normalize_path_is_kongs_single_pass() -> None:
    once = normalize_path("/a/%%32%65%%32%65/b")
    assert once == "/a/%2e%2e/b"  # what Kong's router and get_path() see
    assert normalize_path(once) == "/b"  # not idempotent: hence never twice on Kong's path


def test_dot_removal_of_long_slash_runs_stays_exact() -> None:
    assert remove_dots("/" * 8192) == "/"
    assert remove_dots("/a" + "//" * 4000 + "b/./../c/") == "/a/c/"
    assert remove_dots("/a/b/..") == "/a/" and remove_dots("/..") == "/"


# 6. Hostile token headers ------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_deeply_nested_jose_header_is_malformed_not_a_crash() -> None:
    from kong_ace.core.tokens import MALFORMED, TokenVerifier, parse_compact, unverified_claims

    header = _b64(b'{"alg":' + b"[" * 5000 + b"]" * 5000 + b"}")
    token = f"{header}.{_b64(json.dumps({'iss': 'x'}).encode())}.c2ln"
    assert parse_compact(token) is None  # before: RecursionError
    assert TokenVerifier({}, {}, lambda: 0.0).verify(token) == (None, MALFORMED)
    assert unverified_claims(token) == ({}, {})
    assert d.INVALID_TOKEN
