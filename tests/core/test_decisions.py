"""Every row of the SPEC §4 decision table, and the identity headers, through Enforcer.decide."""

from __future__ import annotations

from typing import Any

import pytest

from kong_ace import Enforcer, Request, hash_key
from kong_ace.limits.limiter import StorageUnavailable
from tests.conftest import PARTNER_KEY, WEB_KEY, example_config

FLIGHTS = {"id": "0b6b", "name": "flights"}
BOOKINGS = {"id": "7c1e", "name": "bookings"}
CHALLENGE = {"WWW-Authenticate": 'Key realm="kong"'}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def flights(path: str, method: str = "GET", **kw: Any) -> Request:
    return Request(method, "/flights/v1" + path, service=FLIGHTS, **kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def enf(config: dict[str, Any], clock: Clock) -> Enforcer:
    return Enforcer(config, clock=clock)


def test_allowed_request_carries_identity_and_quota(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", headers={"apikey": [WEB_KEY]}))
    assert (d.allowed, d.status, d.message) == (True, None, None)
    assert d.upstream_headers == {"X-ACE-Operation-ID": "listFlights",
                                  "X-ACE-Application-ID": "web-app",
                                  "X-ACE-Package": "flights-basic"}
    assert d.headers["RateLimit-Limit"] == "5" and d.headers["RateLimit-Remaining"] == "4"
    assert d.headers["X-RateLimit-Remaining-Minute"] == "99"
    assert (d.operation_id, d.application_id, d.package) == ("listFlights", "web-app",
                                                            "flights-basic")


def test_no_operation_required_is_404(enf: Enforcer) -> None:
    d = enf.decide(flights("/trains", headers={"apikey": WEB_KEY}))
    assert (d.allowed, d.status, d.message) == (False, 404, "no API operation matches this request")
    assert d.body == {"message": "no API operation matches this request"}


def test_no_operation_if_present_passes_untouched(config: dict[str, Any]) -> None:
    config["match_policy"] = "if_present"
    d = Enforcer(config).decide(flights("/trains"))
    assert d.allowed and d.status is None and not d.upstream_headers and not d.headers


def test_forged_identity_headers_are_removed_even_on_pass_through(config) -> None:
    config["match_policy"] = "if_present"
    d = Enforcer(config).decide(flights("/trains", headers={"X-ACE-Application-ID": "admin"}))
    assert d.allowed and d.clear_upstream_headers == ("x-ace-application-id",)


def test_forged_headers_are_overwritten_or_cleared(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", headers={"apikey": WEB_KEY, "x-ace-api": "x",
                                                "X-ACE-Package": "gold"}))
    assert d.upstream_headers["X-ACE-Package"] == "flights-basic"
    assert d.clear_upstream_headers == ("x-ace-api",)


def test_method_not_allowed_is_405_with_allow(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights/12", method="PUT", headers={"apikey": WEB_KEY}))
    assert (d.status, d.message, d.headers) == (405, "method not allowed",
                                                {"Allow": "DELETE, GET"})


def test_odd_case_method_is_405_even_if_present(config: dict[str, Any]) -> None:
    config["match_policy"] = "if_present"
    d = Enforcer(config).decide(flights("/flights/12", method="get"))
    assert (d.allowed, d.status) == (False, 405)


def test_no_key_is_401_with_challenge(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", headers={"apikey": ""}))
    assert (d.status, d.message, d.headers) == (401, "No API key found in request", CHALLENGE)


def test_unknown_key_is_401_unauthorized(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", headers={"apikey": WEB_KEY + "x"}))
    assert (d.status, d.message, d.headers) == (401, "Unauthorized", CHALLENGE)


def test_revoked_key(config: dict[str, Any]) -> None:
    config["applications"][0]["credentials"][0]["status"] = "revoked"
    d = Enforcer(config).decide(flights("/flights", headers={"apikey": WEB_KEY}))
    assert (d.status, d.message, d.headers) == (401, "API key revoked", CHALLENGE)


@pytest.mark.parametrize("expires_at", ["1970-01-12T13:46:50Z", "1000010", 1_000_010])
def test_expired_key_follows_the_clock(config, clock: Clock, expires_at: Any) -> None:
    config["applications"][0]["credentials"][0]["expires_at"] = expires_at
    enf = Enforcer(config, clock=clock)  # expires at 1,000,010
    assert enf.decide(flights("/flights", headers={"apikey": WEB_KEY})).allowed
    clock.now += 10
    d = enf.decide(flights("/flights", headers={"apikey": WEB_KEY}))
    assert (d.status, d.message, d.headers) == (401, "API key expired", CHALLENGE)


def test_duplicate_differing_keys(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", headers={"apikey": WEB_KEY}, query={"apikey": "other"}))
    assert (d.status, d.message, d.headers) == (401, "Duplicate API key found", {})
    d = enf.decide(flights("/flights", headers={"apikey": [WEB_KEY, PARTNER_KEY]}))
    assert d.message == "Duplicate API key found"


def test_same_key_twice_is_fine(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", headers={"apikey": WEB_KEY}, query={"apikey": [WEB_KEY]}))
    assert d.allowed


def test_key_in_query_and_switches(config: dict[str, Any]) -> None:
    assert Enforcer(config).decide(flights("/flights", query={"apikey": WEB_KEY})).allowed
    config["key_in_query"] = False
    d = Enforcer(config).decide(flights("/flights", query={"apikey": WEB_KEY}))
    assert d.message == "No API key found in request"
    config["key_in_query"], config["key_in_header"] = True, False
    d = Enforcer(config).decide(flights("/flights", headers={"apikey": WEB_KEY}))
    assert d.message == "No API key found in request"


def test_header_names_are_case_insensitive(enf: Enforcer) -> None:
    assert enf.decide(flights("/flights", headers={"ApiKey": WEB_KEY})).allowed


def test_hide_credentials(config: dict[str, Any]) -> None:
    config["hide_credentials"] = True
    d = Enforcer(config).decide(flights("/flights", headers={"apikey": WEB_KEY},
                                        query={"apikey": WEB_KEY, "page": "2"}))
    assert d.allowed
    assert d.clear_upstream_headers == ("apikey",) and d.clear_query == ("apikey",)


def test_not_registered_for_operation(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", method="POST", headers={"apikey": WEB_KEY}))
    assert (d.status, d.message) == (403, "application is not registered for this operation")
    assert d.application_id == "web-app"


@pytest.mark.parametrize(("status", "message"), [
    ("pending", "registration pending approval"),
    ("rejected", "registration rejected"),
    ("revoked", "registration revoked"),
])
def test_registration_states(config: dict[str, Any], status: str, message: str) -> None:
    config["applications"][1]["registrations"][0]["status"] = status
    d = Enforcer(config).decide(flights("/flights", headers={"apikey": PARTNER_KEY}))
    assert (d.allowed, d.status, d.message) == (False, 403, message)


def test_rate_limit_exceeded_is_429_and_not_charged(enf: Enforcer, clock: Clock) -> None:
    req = flights("/flights/1/seats", headers={"apikey": WEB_KEY})  # override: 3 per minute
    assert [enf.decide(req).allowed for _ in range(4)] == [True, True, True, False]
    d = enf.decide(req)
    assert (d.status, d.message) == (429, "API rate limit exceeded")
    assert int(d.headers["Retry-After"]) >= 1 and d.headers["RateLimit-Remaining"] == "0"
    # The override counts apart from the package limit (5/s shared by the other operations).
    assert all(enf.decide(flights("/flights", headers={"apikey": WEB_KEY})).allowed
               for _ in range(5))
    assert not enf.decide(flights("/flights", headers={"apikey": WEB_KEY})).allowed
    clock.now += 120
    assert enf.decide(req).allowed


def test_hide_client_headers(config: dict[str, Any]) -> None:
    config["rate_limiting"]["hide_client_headers"] = True
    d = Enforcer(config).decide(flights("/flights", headers={"apikey": WEB_KEY}))
    assert d.allowed and d.headers == {}


def test_first_registration_with_quota_is_charged(config: dict[str, Any]) -> None:
    config["packages"].append({"name": "spare", "rate_limits": [{"limit": 2, "duration": "hours"}],
                               "operations": [{"api": "flights", "operation_id": "listFlights"}]})
    config["applications"][0]["registrations"].append({"package": "spare", "status": "approved"})
    enf = Enforcer(config, clock=Clock())
    got = [enf.decide(flights("/flights", headers={"apikey": WEB_KEY})) for _ in range(8)]
    assert [d.package for d in got[:7]] == ["flights-basic"] * 5 + ["spare"] * 2
    assert got[7].status == 429


def test_api_registration(config: dict[str, Any]) -> None:
    config["apis"][1]["rate_limits"] = [{"limit": 1, "duration": "days"}]
    config["applications"][1]["registrations"] = [{"api": "bookings", "status": "approved"}]
    enf = Enforcer(config, clock=Clock())
    req = Request("GET", "/bookings/v2/bookings/7", headers={"apikey": PARTNER_KEY},
                  service=BOOKINGS)
    d = enf.decide(req)
    assert d.allowed and d.upstream_headers["X-ACE-API"] == "bookings"
    assert "X-ACE-Package" not in d.upstream_headers and d.api == "bookings"
    assert enf.decide(req).status == 429


def test_consumer_mapped_application(enf: Enforcer) -> None:
    req = Request("GET", "/bookings/v2/customers/me", service=BOOKINGS,
                  consumer={"id": "c-1", "username": "mobile"})
    d = enf.decide(req)
    assert d.allowed and d.application_id == "mobile-app"
    assert d.operation_id == "getCurrentCustomer"


def test_key_of_consumer_mapped_application_authenticates_as_consumer(config) -> None:
    key = "mobile-ace-key"
    config["applications"][2]["credentials"] = [{"key_hash": "sha256:" + hash_key(key)}]
    d = Enforcer(config).decide(Request("GET", "/bookings/v2/bookings", service=BOOKINGS,
                                        headers={"apikey": key}))
    assert d.allowed and d.consumer == "mobile"


def test_unmapped_consumer_without_anonymous_needs_a_key(enf: Enforcer) -> None:
    d = enf.decide(flights("/flights", consumer={"id": "c-9", "username": "stranger"}))
    assert d.status == 401


def test_anonymous(config: dict[str, Any]) -> None:
    config["anonymous"] = "guest"
    enf = Enforcer(config)
    # Authenticated by another plugin, not an ACE application: ACE stands aside.
    assert enf.decide(flights("/flights/1", method="DELETE",
                              consumer={"username": "stranger"})).allowed
    # No credential: continue as the anonymous consumer.
    d = enf.decide(flights("/flights"))
    assert d.allowed and d.consumer == "guest" and d.application_id is None
    # Arriving as the anonymous consumer of another auth plugin counts as no credential.
    d = enf.decide(flights("/flights", consumer={"username": "guest"},
                           headers={"apikey": "wrong"}))
    assert d.status == 401 and d.message == "Unauthorized"


def test_anonymous_mapped_to_an_application_is_authorized(config: dict[str, Any]) -> None:
    config["anonymous"] = "guest"
    config["applications"].append({"id": "public", "consumer": "guest", "registrations": [
        {"package": "flights-basic", "status": "approved"}]})
    enf = Enforcer(config)
    d = enf.decide(flights("/flights"))
    assert d.allowed and d.application_id == "public" and d.consumer == "guest"
    assert enf.decide(flights("/flights", method="POST")).status == 403


class BrokenLimiter:
    def consume(self, key: str, limits: Any) -> Any:
        raise StorageUnavailable("connection refused")


@pytest.mark.parametrize(("tolerant", "allowed", "status"), [(True, True, None),
                                                             (False, False, 500)])
def test_store_unavailable(config, tolerant: bool, allowed: bool, status, caplog) -> None:
    config["rate_limiting"]["fault_tolerant"] = tolerant
    enf = Enforcer(config)
    enf.limiter = BrokenLimiter()  # the real Redis outage is tested in the rate-limit suite
    d = enf.decide(flights("/flights", headers={"apikey": WEB_KEY}))
    assert (d.allowed, d.status) == (allowed, status)
    if status:
        assert d.message == "An unexpected error occurred"
    assert "rate-limit store unavailable" in caplog.text and WEB_KEY not in caplog.text


def test_unknown_and_known_keys_take_the_same_path() -> None:
    # Both go through one SHA-256 and one dict lookup; nothing compares the plain key.
    enf = Enforcer(example_config())
    digests = set(enf.catalog.credentials)
    assert hash_key(WEB_KEY) in digests and WEB_KEY not in digests
