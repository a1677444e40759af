"""SPEC §11 through Enforcer.decide, against a real JWKS/discovery endpoint on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kong_ace import Enforcer, Request, hash_key
from kong_ace.core import decision as d
from kong_ace.core.jwks import KeySet
from kong_ace.errors import ConfigError
from tests.conftest import SPECS
from tests.idp import IdP, SigningKey

WEB_KEY = "key-web-0123456789"
KEYONLY_KEY = "key-keyonly-0123456789"
INVALID = {"WWW-Authenticate": 'Bearer realm="kong", error="invalid_token"'}
BEARER = {"WWW-Authenticate": 'Bearer realm="kong"'}
NOW = 1_900_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def auth_config(idp: IdP, **corp: Any) -> dict[str, Any]:
    """Flights under an OpenID strategy, a key package, an open package, a scoped package."""
    strategy = {"name": "corp", "type": "openid_connect", "issuer": idp.issuer,
                "jwks_uri": idp.jwks_uri, "audience": ["flights-api"], **corp}
    return {
        "match_policy": "required",
        "specs_dir": str(SPECS),
        "auth_strategies": [
            strategy,
            {"name": "corp-write", "type": "openid_connect", "issuer": idp.issuer,
             "jwks_uri": idp.jwks_uri, "scopes": ["flights:write"]},
        ],
        "apis": [{"name": "flights", "spec_file": "flights.yaml"}],
        "packages": [
            {"name": "partner", "auth_strategy": "corp",
             "operations": [{"api": "flights", "operation_id": "listFlights"},
                            {"api": "flights", "operation_id": "getFlight"}]},
            {"name": "keys", "rate_limits": [{"limit": 100, "duration": "minutes"}],
             "operations": [{"api": "flights", "operation_id": "getAirport"}]},
            {"name": "public", "auth_strategy": "none",
             "operations": [{"api": "flights", "operation_id": "exportManifest"}]},
            {"name": "writes", "auth_strategy": "corp-write",
             "operations": [{"api": "flights", "operation_id": "createFlight"}]},
        ],
        "applications": [
            {"id": "web", "client_ids": ["web-client"],
             "credentials": [{"key_hash": f"sha256:{hash_key(WEB_KEY)}"}],
             "registrations": [{"package": "partner", "status": "approved"},
                               {"package": "keys", "status": "approved"},
                               {"package": "writes", "status": "approved"}]},
            {"id": "keyonly", "credentials": [{"key_hash": f"sha256:{hash_key(KEYONLY_KEY)}"}],
             "registrations": [{"package": "partner", "status": "approved"}]},
        ],
    }


@pytest.fixture
def idp() -> Iterator[IdP]:
    with IdP() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def enf(idp: IdP, clock: Clock) -> Enforcer:
    return Enforcer(auth_config(idp), clock=clock)


def call(enf: Enforcer, path: str = "/flights", token: str | None = None, method: str = "GET",
         **headers: Any) -> d.Decision:
    h = {k.replace("_", "-"): [v] for k, v in headers.items()}
    if token is not None:
        h["authorization"] = [f"Bearer {token}"]
    return enf.decide(Request(method, "/flights/v1" + path, headers=h))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(dec: d.Decision) -> None:
    assert (dec.allowed, dec.status, dec.message, dict(dec.headers)) == (
        False, 401, d.INVALID_TOKEN, INVALID)


def test_valid_rsa_and_ec_tokens_admit_the_client_application(enf: Enforcer, idp: IdP) -> None:
    for key in (idp.rsa, idp.ec):
        dec = call(enf, token=idp.token(key, now=NOW))
        assert dec.allowed, dec.message
        assert (dec.application_id, dec.package, dec.operation_id) == ("web", "partner",
                                                                      "listFlights")
        assert dec.upstream_headers["X-ACE-Application-ID"] == "web"


def test_jwks_fetched_once_at_compile_time(enf: Enforcer, idp: IdP) -> None:
    hits = idp.jwks_hits
    assert hits == 1
    for _ in range(3):
        assert call(enf, token=idp.token(now=NOW)).allowed
    assert idp.jwks_hits == hits


def test_expired_token_is_invalid_token_and_leeway_applies(enf: Enforcer, idp: IdP) -> None:
    _refused(call(enf, token=idp.token(now=NOW - 400, ttl=300)))  # expired 100 s ago
    assert call(enf, token=idp.token(now=NOW - 310, ttl=300)).allowed  # 10 s ago: leeway 30


def test_cached_token_is_refused_once_it_expires(enf: Enforcer, idp: IdP, clock: Clock) -> None:
    token = idp.token(now=NOW, ttl=60)
    assert call(enf, token=token).allowed
    assert len(enf.auth.verifier) == 1
    clock.now = NOW + 60 + 30  # exp + leeway
    _refused(call(enf, token=token))


def test_not_yet_valid_token(enf: Enforcer, idp: IdP) -> None:
    _refused(call(enf, token=idp.token(now=NOW, nbf=int(NOW + 100))))
    assert call(enf, token=idp.token(now=NOW, nbf=int(NOW + 20))).allowed  # within leeway


def test_wrong_issuer_and_wrong_audience(enf: Enforcer, idp: IdP) -> None:
    _refused(call(enf, token=idp.token(now=NOW, iss="http://evil.example")))
    _refused(call(enf, token=idp.token(now=NOW, aud="other-api")))
    assert call(enf, token=idp.token(now=NOW, aud=["other-api", "flights-api"])).allowed


def test_token_without_exp_or_with_critical_extensions_is_refused(enf: Enforcer,
                                                                  idp: IdP) -> None:
    _refused(call(enf, token=idp.token(now=NOW, exp=None)))
    _refused(call(enf, token=idp.token(now=NOW, headers={"crit": ["b64"], "b64": False})))


def test_unknown_kid_refreshes_once_then_rotation(idp: IdP, clock: Clock) -> None:
    enf = Enforcer(auth_config(idp), clock=clock)
    new = SigningKey("RS256")
    _refused(call(enf, token=idp.token(new, now=NOW)))  # keys just fetched: no refresh yet
    assert idp.jwks_hits == 1
    clock.now += 30
    _refused(call(enf, token=idp.token(new, now=NOW)))  # not published yet: one refresh
    assert idp.jwks_hits == 2
    idp.keys.append(new)
    # Within the refresh interval: no second fetch for another unknown kid.
    clock.now += 5
    _refused(call(enf, token=idp.token(new, now=NOW)))
    assert idp.jwks_hits == 2
    clock.now += 30
    token = idp.token(new, now=NOW)
    assert call(enf, token=token).allowed  # the rotated-in key was fetched
    assert idp.jwks_hits == 3
    idp.keys.remove(idp.rsa)  # old key retired by the IdP
    assert enf.auth.key_sets[idp.issuer].refresh()
    _refused(call(enf, token=idp.token(SigningKey("RS256", kid=new.kid), now=NOW)))


def test_unknown_kid_wait_is_bounded(idp: IdP, clock: Clock) -> None:
    enf = Enforcer(auth_config(idp), clock=clock)
    clock.now += 30
    keys = enf.auth.key_sets[idp.issuer]
    keys.wait = 0.0  # the request does not wait at all; the fetch still happens behind it
    new = SigningKey("ES256")
    idp.keys.append(new)
    token = idp.token(new, now=NOW)
    _refused(call(enf, token=token))
    for _ in range(200):  # the background fetch lands (bounded poll, no sleeping on time)
        if new.kid in keys.keys:
            break
        keys.refresh_for_unknown()  # joins the pending fetch, if still running
        keys.wait = 0.05
    assert call(enf, token=token).allowed


def test_alg_none_is_refused(enf: Enforcer, idp: IdP) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": idp.rsa.kid}).encode())
    body = _b64(json.dumps({"iss": idp.issuer, "aud": "flights-api", "client_id": "web-client",
                            "exp": int(NOW + 300)}).encode())
    _refused(call(enf, token=f"{header}.{body}."))


def test_hs256_signed_with_the_public_key_is_refused(enf: Enforcer, idp: IdP) -> None:
    for key in (idp.rsa, idp.ec):
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
        body = _b64(json.dumps({"iss": idp.issuer, "aud": "flights-api",
                                "client_id": "web-client", "exp": int(NOW + 300)}).encode())
        for secret in (key.public_pem(), json.dumps(key.jwk()).encode()):
            sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
            _refused(call(enf, token=f"{header}.{body}.{_b64(sig)}"))


def test_forged_signature_and_swapped_payload_are_refused(enf: Enforcer, idp: IdP) -> None:
    good = idp.token(now=NOW)
    h, p, s = good.split(".")
    flipped = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
    _refused(call(enf, token=f"{h}.{p}.{flipped}"))
    other = idp.token(now=NOW, client_id="someone-else").split(".")[1]
    _refused(call(enf, token=f"{h}.{other}.{s}"))
    assert call(enf, token=good).allowed  # the refusals did not poison the cache


def test_attacker_key_is_refused(enf: Enforcer, idp: IdP) -> None:
    mallory = SigningKey("RS256", kid=idp.rsa.kid)  # same kid, own private key
    _refused(call(enf, token=idp.token(mallory, now=NOW)))


def test_unknown_client_id(enf: Enforcer, idp: IdP) -> None:
    _refused(call(enf, token=idp.token(now=NOW, client_id="stranger")))
    # credential_claim: client_id first, then azp
    assert call(enf, token=idp.token(now=NOW, client_id=None, azp="web-client")).allowed


def test_missing_scope_is_403_insufficient_scope(enf: Enforcer, idp: IdP) -> None:
    dec = call(enf, "/flights", idp.token(now=NOW), method="POST")
    assert (dec.status, dec.message) == (403, d.INSUFFICIENT_SCOPE)
    assert dec.headers["WWW-Authenticate"] == (
        'Bearer realm="kong", error="insufficient_scope", scope="flights:write"')
    ok = call(enf, "/flights", idp.token(now=NOW, scope="flights:read flights:write"),
              method="POST")
    assert ok.allowed and ok.package == "writes"
    assert call(enf, "/flights", idp.token(now=NOW, scope=None, scp=["flights:write"]),
                method="POST").allowed


def test_oversized_token(enf: Enforcer, idp: IdP) -> None:
    _refused(call(enf, token=idp.token(now=NOW, pad="x" * 9000)))


def test_no_token_where_one_is_needed(enf: Enforcer) -> None:
    dec = call(enf)
    assert (dec.status, dec.message, dict(dec.headers)) == (401, d.NO_TOKEN, BEARER)
    basic = call(enf, authorization="Basic dXNlcjpwYXNz")
    assert (basic.status, basic.message) == (401, d.NO_TOKEN)


def test_key_to_token_only_package_is_401(enf: Enforcer) -> None:
    for key in (WEB_KEY, KEYONLY_KEY, "no-such-key"):
        dec = call(enf, apikey=key)
        assert (dec.status, dec.message, dict(dec.headers)) == (401, d.TOKEN_REQUIRED, BEARER)


def test_key_package_still_takes_keys_and_not_tokens(enf: Enforcer, idp: IdP) -> None:
    dec = call(enf, "/airports/JFK", apikey=WEB_KEY)
    assert dec.allowed and dec.package == "keys" and dec.headers["RateLimit-Limit"] == "100"
    refused = call(enf, "/airports/JFK", token=idp.token(now=NOW))
    assert (refused.status, refused.message) == (401, d.NO_API_KEY)


def test_open_package_needs_no_application(enf: Enforcer) -> None:
    dec = call(enf, "/flights/12/manifest.json", X_ACE_Application_ID="forged")
    assert dec.allowed and dec.application_id is None and not dec.headers
    assert dec.upstream_headers == {"X-ACE-Operation-ID": "exportManifest"}
    assert dec.clear_upstream_headers == ("x-ace-application-id",)


def test_idp_down_with_keys_cached_keeps_serving(idp: IdP, clock: Clock) -> None:
    enf = Enforcer(auth_config(idp), clock=clock)
    idp.close()
    keys = enf.auth.key_sets[idp.issuer]
    assert not keys.refresh() and keys.error
    assert call(enf, token=idp.token(idp.ec, now=NOW)).allowed
    clock.now += 60
    _refused(call(enf, token=idp.token(SigningKey("RS256"), now=clock.now)))  # unknown kid
    assert call(enf, token=idp.token(now=clock.now)).allowed


def test_idp_down_at_compile_time_starts_and_refuses_tokens(clock: Clock) -> None:
    with IdP() as idp:
        config = auth_config(idp)
    enf = Enforcer(config, clock=clock)  # no ConfigError: the gateway starts
    assert enf.auth.key_sets[idp.issuer].error
    _refused(call(enf, token=idp.token(now=NOW)))


def test_discovery_and_inline_jwks(idp: IdP, clock: Clock) -> None:
    config = auth_config(idp, jwks_uri=None)
    config["auth_strategies"][1]["jwks_uri"] = None
    enf = Enforcer(config, clock=clock)
    assert (idp.discovery_hits, idp.jwks_hits) == (1, 1)
    assert call(enf, token=idp.token(now=NOW)).allowed
    jwks = {"keys": [idp.ec.jwk()]}
    for inline in (jwks, json.dumps(jwks)):
        hits = idp.jwks_hits
        config = auth_config(idp, jwks_uri=None, jwks=inline)
        config["auth_strategies"].pop()  # corp-write would fetch
        config["packages"].pop()
        config["applications"][0]["registrations"].pop()
        enf = Enforcer(config, clock=clock)
        assert idp.jwks_hits == hits
        assert call(enf, token=idp.token(idp.ec, now=NOW)).allowed
        _refused(call(enf, token=idp.token(idp.rsa, now=NOW)))


def test_discovery_with_a_different_issuer_is_not_trusted(idp: IdP) -> None:
    keys = KeySet(idp.issuer + "/", fetch=lambda url, t: json.dumps(
        {"issuer": "http://evil", "jwks_uri": idp.jwks_uri}).encode())
    assert not keys.refresh() and "issuer" in (keys.error or "")


def test_consumer_mapped_application_still_admitted(idp: IdP, clock: Clock) -> None:
    config = auth_config(idp)
    config["applications"][0]["consumer"] = "web-consumer"
    enf = Enforcer(config, clock=clock)
    dec = enf.decide(Request("GET", "/flights/v1/flights", consumer={"username": "web-consumer"}))
    assert dec.allowed and dec.application_id == "web"


def test_api_registration_keeps_its_own_strategy(idp: IdP, clock: Clock) -> None:
    # An {api} registration to flights (default key strategy) admits keys on every operation,
    # even those a token-only package holds; the token-only package still refuses keys alone.
    config = auth_config(idp)
    config["applications"][1]["registrations"] = [{"api": "flights", "status": "approved"}]
    enf = Enforcer(config, clock=clock)
    dec = call(enf, apikey=KEYONLY_KEY)
    assert dec.allowed and dec.api == "flights"
    web = call(enf, apikey=WEB_KEY)  # web holds the token-only package, not the API
    assert (web.status, web.message) == (403, d.NOT_REGISTERED)


@pytest.mark.parametrize(
    ("edit", "place", "text"),
    [
        (lambda c: c["packages"][1].update(auth_strategy="nope"), "packages[1].auth_strategy",
         "unknown auth strategy 'nope'"),
        (lambda c: c["apis"][0].update(auth_strategy="nope"), "apis[0].auth_strategy",
         "unknown auth strategy"),
        (lambda c: c["applications"][1].update(client_ids=["x", "web-client"]),
         "applications[1].client_ids[1]", "already a client id of application 'web'"),
        (lambda c: c["auth_strategies"][0].update(name="none"), "auth_strategies[0].name",
         "reserved"),
        (lambda c: c["auth_strategies"][1].update(name="corp"), "auth_strategies[1].name",
         "duplicate auth strategy name 'corp'"),
        (lambda c: c["auth_strategies"][0].update(algorithms=["RS256", "HS256"]),
         "auth_strategies[0].algorithms[1]", "'HS256' is not allowed"),
        (lambda c: c["auth_strategies"][0].update(algorithms=["none"]),
         "auth_strategies[0].algorithms[0]", "never accepted"),
        (lambda c: c["auth_strategies"][0].update(jwks={"keys": []}), "auth_strategies[0].jwks",
         "not both"),
        (lambda c: c["auth_strategies"][0].update(jwks_uri=None, jwks="{"),
         "auth_strategies[0].jwks", "inline JWKS"),
        (lambda c: c["auth_strategies"][0].update(key_names=["x"]),
         "auth_strategies[0].key_names", "only for type key_auth"),
        (lambda c: c["auth_strategies"][0].update(type="saml"), "auth_strategies[0].type",
         "not one of key_auth, openid_connect"),
        (lambda c: c["auth_strategies"][0].update(issuer="idp.example"),
         "auth_strategies[0].issuer", "http(s) URL"),
        (lambda c: c["auth_strategies"][0].update(leeway=-1), "auth_strategies[0].leeway",
         "between 0"),
        (lambda c: c["auth_strategies"][0].update(colour="red"), "auth_strategies[0].colour",
         "unknown field"),
    ],
)
def test_config_errors_name_the_place(idp: IdP, edit: Any, place: str, text: str) -> None:
    config = auth_config(idp)
    edit(config)
    with pytest.raises(ConfigError) as err:
        Enforcer(config)
    assert err.value.place == place and text in str(err.value)


def test_key_auth_strategy_with_its_own_key_names(idp: IdP, clock: Clock) -> None:
    config = auth_config(idp)
    config["auth_strategies"].append({"name": "partner-keys", "type": "key_auth",
                                      "key_names": ["x-partner-key"], "hide_credentials": True})
    config["packages"][1]["auth_strategy"] = "partner-keys"
    enf = Enforcer(config, clock=clock)
    dec = call(enf, "/airports/JFK", x_partner_key=WEB_KEY)
    assert dec.allowed and dec.package == "keys"
    assert "x-partner-key" in dec.clear_upstream_headers
    refused = call(enf, "/airports/JFK", apikey=WEB_KEY)
    assert (refused.status, refused.message) == (401, d.NO_API_KEY)


def test_non_json_numbers_in_claims_are_malformed(enf: Enforcer, idp: IdP) -> None:
    # A NaN exp compares false with everything: it must never read as "not expired".
    import jwt as pyjwt

    for exp in ("NaN", "Infinity"):
        body = json.dumps({"iss": idp.issuer, "aud": "flights-api", "client_id": "web-client",
                           "exp": 1}).replace(": 1}", f": {exp}}}")
        header = _b64(json.dumps({"alg": "RS256", "kid": idp.rsa.kid}).encode())
        signing = f"{header}.{_b64(body.encode())}"
        sig = pyjwt.algorithms.RSAAlgorithm(pyjwt.algorithms.RSAAlgorithm.SHA256).sign(
            signing.encode(), idp.rsa.private)
        _refused(call(enf, token=f"{signing}.{_b64(sig)}"))


def test_injected_fetcher_and_background_refresh(idp: IdP, clock: Clock) -> None:
    from kong_ace.core.jwks import REFRESHER

    published = {"keys": [idp.rsa.jwk()]}
    urls: list[str] = []

    def fetch(url: str, timeout: float) -> bytes:
        urls.append(url)
        return json.dumps(published).encode()

    config = auth_config(idp)
    enf = Enforcer(config, clock=clock, fetcher=fetch)
    assert urls == [idp.jwks_uri] and idp.jwks_hits == 0  # no network: the fetcher was used
    assert call(enf, token=idp.token(idp.rsa, now=NOW)).allowed
    published["keys"].append(idp.ec.jwk())  # the IdP publishes a new key
    REFRESHER.run_once()
    assert len(urls) == 1  # not due yet
    clock.now += 300
    REFRESHER.run_once()  # what the background thread does every few seconds
    assert len(urls) == 2
    enf.auth.key_sets[idp.issuer].min_refresh = 10**9  # no unknown-kid refresh can help
    assert call(enf, token=idp.token(idp.ec, now=clock.now)).allowed


# --- found in review after the merge with request confusion ---------------------------------


def test_hide_credentials_holds_when_a_token_decides(idp: IdP, clock: Clock) -> None:
    # getFlight admits a key (package "also-keys") or a token (package "partner"): the key
    # sent beside a winning token is still stripped before the upstream.
    config = auth_config(idp)
    config["hide_credentials"] = True
    config["packages"].append({"name": "also-keys", "operations": [
        {"api": "flights", "operation_id": "getFlight"}]})
    config["applications"][0]["registrations"].append({"package": "also-keys",
                                                       "status": "approved"})
    enf = Enforcer(config, clock=clock)
    token = idp.token(now=NOW)
    by_key = call(enf, "/flights/BA1", apikey=WEB_KEY)
    both = call(enf, "/flights/BA1", token, apikey=WEB_KEY)
    assert by_key.allowed and both.allowed
    assert "apikey" in by_key.clear_upstream_headers and "apikey" in both.clear_upstream_headers
    in_query = enf.decide(Request("GET", "/flights/v1/flights/BA1",
                                  headers={"authorization": [f"Bearer {token}"]},
                                  query={"apikey": [WEB_KEY]}))
    assert in_query.allowed and in_query.clear_query == ("apikey",)


def test_a_credential_of_another_strategy_never_becomes_the_anonymous_consumer() -> None:
    # SPEC §11: a credential of the wrong strategy for the operation's package is a 401, even
    # where `anonymous` would admit a request that presents none.
    from tests.core.confusion_catalog import WEB_KEY as CONFUSION_KEY
    from tests.core.confusion_catalog import confusion_config

    config = confusion_config(anonymous="guest", auth_strategies=[
        {"name": "k2", "type": "key_auth", "key_names": ["x-k2"]}])
    for package in config["packages"]:
        if package["name"] == "basic":
            package["auth_strategy"] = "k2"
    enf = Enforcer(config)

    def get(**headers: str) -> d.Decision:
        return enf.decide(Request("GET", "/files/users/7",
                                  {"host": "api.example.com", **headers},
                                  host="api.example.com"))

    assert (get(apikey=CONFUSION_KEY).status, get(authorization="Bearer a.b.c").status) == (
        401, 401)
    nothing = get()
    assert (nothing.allowed, nothing.consumer) == (True, "guest")
