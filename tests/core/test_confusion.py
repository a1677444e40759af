"""Request confusion through the core (SPEC §8): decide on what the upstream will run."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_ace import ConfigError, Enforcer, Request
from kong_ace.core import target as t
from kong_ace.core.matcher import parse_template

from .confusion_catalog import MOBILE, WEB_KEY, confusion_config

KEY = {"apikey": WEB_KEY}


def enf(**overrides: Any) -> Enforcer:
    return Enforcer(confusion_config(**overrides))


def req(path: str, method: str = "GET", headers: dict[str, Any] | None = None,
        **kw: Any) -> Request:
    return Request(method, path, headers=KEY if headers is None else headers, **kw)


# 1. Percent-encoded separators -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/files/flights/BA117%2Fmanifest.json",
                                  "/files/flights/BA117%2fmanifest.json",
                                  "/files/flights/BA117%5Cmanifest.json",
                                  "/files/flights/BA117\\manifest.json"])
def test_escaped_slash_under_an_api_is_refused_by_default(path: str) -> None:
    # Before: admitted as getFlight; a decoding upstream runs exportManifest.
    d = enf().decide(req(path))
    assert (d.status, d.message) == (400, t.ESCAPED_SLASH)


def test_escaped_slash_outside_every_api_passes_through() -> None:
    assert enf().decide(req("/elsewhere/a%2Fb", headers={})).allowed


def test_escaped_slash_before_the_base_path_counts_too() -> None:
    assert enf().decide(req("/files%2Fusers/7")).status == 400


def test_unescape_decides_on_the_decoded_path_and_forwards_it() -> None:
    e = enf(path_with_escaped_slashes_action="unescape")
    d = e.decide(req("/files/flights/BA117%2Fmanifest.json"))
    assert (d.status, d.operation_id) == (403, "exportManifest")
    d = e.decide(req("/files/users/a%2F..%2F7"))
    assert d.allowed and d.operation_id == "getUser" and d.upstream_path == "/files/users/7"
    plain = e.decide(req("/files/users/7"))
    assert plain.allowed and plain.upstream_path is None


def test_keep_is_the_old_behaviour() -> None:
    d = enf(path_with_escaped_slashes_action="keep").decide(
        req("/files/flights/BA117%2Fmanifest.json"))
    assert d.allowed and d.operation_id == "getFlight" and d.upstream_path is None


def test_actions_are_validated() -> None:
    with pytest.raises(ConfigError, match="path_with_escaped_slashes_action"):
        enf(path_with_escaped_slashes_action="decode")
    with pytest.raises(ConfigError, match="method_override_action"):
        enf(method_override_action="honour")


# 2. A raw '#' -----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "target"), [
    ("/files/users/7#/../export", None),
    ("/files/users/7", "/files/users/7?apikey=x#frag"),
    ("/elsewhere#x", None),
])
def test_fragment_in_the_target_is_refused(path: str, target: str | None) -> None:
    d = enf().decide(req(path, target=target))
    assert (d.status, d.message) == (400, t.FRAGMENT)


# 3. ';' path parameters -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/files/users/export;x", "/files/users/export;",
                                  "/files/users;x/export", "/files;a/users/7",
                                  "/files/users/export%3Bx"])
def test_path_parameters_under_an_api_are_refused(path: str) -> None:
    # Before: /users/export;x was admitted as getUser ({id}); Tomcat runs exportUsers.
    d = enf().decide(req(path))
    assert (d.status, d.message) == (400, t.PATH_PARAMETERS)


def test_a_template_with_a_literal_semicolon_is_reported_unreachable() -> None:
    config = confusion_config()
    config["apis"][0]["operations"].append({"method": "POST", "path": "/items/{id}/;edit"})
    assert any("/files/items/{id}/;edit" in w and "unreachable" in w
               for w in Enforcer(config).warnings)


def test_path_parameters_elsewhere_pass_through() -> None:
    assert enf().decide(req("/elsewhere/x;jsessionid=1", headers={})).allowed


# 4. if_present never turns a parsing difference into a pass-through -------------------------

def test_unmatched_only_through_parameters_does_not_pass_unauthenticated() -> None:
    # Before: /files/users;x/export matched nothing and passed through with no key at all.
    d = enf().decide(req("/files/users;x/export", headers={}))
    assert not d.allowed and d.status == 400


def test_a_reserved_escape_that_a_decoder_reads_as_another_operation_is_refused() -> None:
    # Kong keeps %3A: ACE sees getJob, a decoding upstream routes job:cancel to cancelJob.
    d = enf().decide(req("/files/jobs/nightly%3Acancel"))
    assert (d.status, d.message) == (400, t.AMBIGUOUS_PATH)
    # Same operation under both readings: fine.
    assert enf().decide(req("/files/jobs/night%3Fly")).operation_id == "getJob"


def test_an_escape_left_behind_by_kongs_single_decoding_pass_is_read_too() -> None:
    # Kong decodes once: %%36%35xport becomes %65xport (getUser for ACE); the upstream decodes
    # %65 again and runs exportUsers.
    d = enf().decide(req("/files/users/%%36%35xport"))
    assert (d.status, d.message) == (400, t.AMBIGUOUS_PATH)


def test_genuinely_unrelated_paths_still_pass_untouched() -> None:
    d = enf().decide(req("/elsewhere/a%3Ab", headers={}))
    assert d.allowed and d.operation_id is None and not d.clear_upstream_headers


# 5. Method overrides ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["X-HTTP-Method-Override", "x-http-method", "X-Method-Override",
                                  "X_HTTP_Method_Override", "x_method-override"])
def test_override_headers_are_stripped_by_default(name: str) -> None:
    d = enf().decide(req("/files/items/7", "POST", {**KEY, name: "DELETE"}))
    assert d.allowed and d.operation_id == "postItem"
    assert name.lower() in d.clear_upstream_headers


def test_override_query_argument_is_stripped_by_default() -> None:
    d = enf().decide(req("/files/items/7", "POST", query={"_method": ["DELETE"], "a": ["1"]}))
    assert d.allowed and d.clear_query == ("_method",)


def test_override_on_a_pass_through_under_an_api_is_stripped() -> None:
    d = enf().decide(req("/files/nothing/here", "POST", {"x-http-method-override": "DELETE"}))
    assert d.allowed and d.clear_upstream_headers == ("x-http-method-override",)
    elsewhere = enf().decide(req("/elsewhere", "POST", {"x-http-method-override": "DELETE"}))
    assert elsewhere.allowed and not elsewhere.clear_upstream_headers


def test_override_reject() -> None:
    d = enf(method_override_action="reject").decide(
        req("/files/items/7", "POST", {**KEY, "x-http-method-override": "DELETE"}))
    assert (d.status, d.message) == (400, t.METHOD_OVERRIDE)


def test_override_follow_decides_on_the_overridden_method() -> None:
    e = enf(method_override_action="follow")
    d = e.decide(req("/files/items/7", "POST", {**KEY, "x-http-method-override": "delete"}))
    assert (d.status, d.operation_id) == (403, "deleteItem")
    d = e.decide(req("/files/items/7", "POST", {**KEY, "x-http-method": "GET"}))
    assert d.allowed and d.operation_id == "getItem" and not d.clear_upstream_headers
    clash = e.decide(req("/files/items/7", "POST", {**KEY, "x-http-method": "GET"},
                         query={"_method": ["DELETE"]}))
    assert clash.status == 400
    # Only POST is overridden by frameworks: on other methods the header is stripped.
    d = e.decide(req("/files/items/7", "GET", {**KEY, "x-http-method": "DELETE"}))
    assert d.allowed and d.clear_upstream_headers == ("x-http-method",)


# 6. Host ----------------------------------------------------------------------------------

def test_scope_is_the_host_header_and_two_hosts_are_refused() -> None:
    e = enf()
    # Before: judged under $host (public.example) while Kong routed on admin.example.
    d = e.decide(req("/svc/data", host="admin.example", authority="public.example"))
    assert (d.status, d.message) == (400, t.HOST_MISMATCH)
    assert e.decide(req("/svc/data", host="admin.example")).status == 403
    assert e.decide(req("/svc/data", host="Public.Example:8000",
                        authority="public.example")).operation_id == "publicData"
    # An odd spelling of the host never escapes the scope into a pass-through.
    assert e.decide(req("/svc/data", host="admin.example.", headers={})).status == 401


# 7. Identity headers ----------------------------------------------------------------------

def test_every_spelling_of_ace_headers_is_cleared_on_pass_through() -> None:
    headers = {"x_ace_application_id": "forged", "X_Ace-Package": "p", "x-ace-other": "o"}
    d = enf().decide(req("/elsewhere", headers=headers))
    assert set(d.clear_upstream_headers) == {"x_ace_application_id", "x_ace-package",
                                             "x-ace-other"}


def test_admission_by_key_clears_consumer_headers_and_ace_spellings() -> None:
    headers = {**KEY, "X_ACE_Application_ID": "forged", "x-ace-application-id": "f2",
               "x-consumer-id": "c", "X_Consumer_Username": "u", "x-credential-identifier": "i",
               "x_anonymous_consumer": "true"}
    d = enf().decide(req("/files/users/7", headers=headers))
    assert d.allowed and d.application_id == "web-app"
    clear = set(d.clear_upstream_headers)
    assert {"x_ace_application_id", "x-consumer-id", "x_consumer_username",
            "x-credential-identifier", "x_anonymous_consumer"} <= clear
    assert "x-ace-application-id" not in clear  # replaced by setting X-ACE-Application-ID


def test_consumer_authenticated_elsewhere_keeps_its_plugin_headers() -> None:
    d = enf().decide(req("/files/users/7", headers={"x-consumer-id": MOBILE["id"]},
                         consumer=MOBILE, credential=True))
    assert d.allowed and d.application_id == "mobile-app"
    assert "x-consumer-id" not in d.clear_upstream_headers


def test_truncated_headers_under_an_api_are_refused_and_elsewhere_cleared_blind() -> None:
    d = enf().decide(req("/files/users/7", headers_truncated=True))
    assert (d.status, d.message) == (400, t.TOO_MANY_HEADERS)
    d = enf().decide(req("/elsewhere", headers={"x-ace-extra": "1"}, headers_truncated=True))
    assert d.allowed and "x_ace_application_id" in d.clear_upstream_headers
    assert len(t.BLIND_ACE) == 8 + 8 + 4 + 4
    assert set(d.clear_upstream_headers) == {*t.BLIND_ACE, "x-ace-extra"}


# 8. Another plugin's anonymous consumer -----------------------------------------------------

@pytest.mark.parametrize(("credential", "headers"), [
    (False, {}), (None, {"x-anonymous-consumer": "true"}), (False, {"X-Anonymous-Consumer": "1"}),
])
def test_consumer_without_credential_is_not_authenticated(credential: bool | None,
                                                          headers: dict[str, str]) -> None:
    d = enf().decide(req("/files/users/7", headers=headers, consumer=MOBILE,
                         credential=credential))
    assert (d.status, d.message) == (401, "No API key found in request")


def test_ace_does_not_stand_aside_for_another_plugins_anonymous_consumer() -> None:
    e = enf(anonymous="guest")
    stranger = {"id": "77", "username": "stranger"}
    # Before: ACE stood aside and deleteItem ran with no registration and no limit.
    d = e.decide(req("/files/items/7", "DELETE", {"x-anonymous-consumer": "true"},
                     consumer=stranger))
    assert not (d.allowed and d.application_id is None and d.consumer is None)
    assert e.decide(req("/files/items/7", "DELETE", {}, consumer=stranger,
                        credential=True)).allowed  # a real credential: ACE stands aside
    d = e.decide(req("/files/items/7", "DELETE", {}, consumer=stranger, credential=False))
    assert d.consumer == "guest"  # continues as ACE's own anonymous consumer


# 9. Linear partial segments ---------------------------------------------------------------

def _reference(template: str, seg: str) -> bool:
    import re
    parts = re.split(r"\{[^{}]+\}", template)
    return re.fullmatch("[^/]+".join(re.escape(p) for p in parts), seg) is not None


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(st.sampled_from(["{year}-{month}-{day}.csv", "{a}-{b}", "x{a}y", "{a}.json", "{a}:cancel",
                        "v{a}-{b}-", "{a}--{b}"]),
       st.text(alphabet="-.xyvcsajon:0", max_size=14))
def test_partial_segments_match_as_the_regex_would(template: str, seg: str) -> None:
    (pattern,) = parse_template("/" + template)
    assert pattern.fullmatch(seg) == _reference(template, seg)


def test_8kb_of_dashes_against_a_three_parameter_segment_does_not_hang() -> None:
    # Before: minutes with nested lazy groups. A hang guard, not a speed target (see the
    # benchmark tests/benchmarks/bench_confusion.py for figures).
    code = ("from kong_ace import Enforcer, Request\n"
            "from tests.core.confusion_catalog import confusion_config\n"
            "e = Enforcer(confusion_config(match_policy='required'))\n"
            "for n in (1000, 4000, 8000):\n"
            "    assert e.decide(Request('GET', '/files/reports/' + '-' * n)).status == 404\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=20)
