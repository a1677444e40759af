"""Monitor mode in the core: the same decision as enforce, let through as a would-deny."""

from __future__ import annotations

from typing import Any

import pytest

from kong_ace import Enforcer, Request
from kong_ace.core.decision import IDENTITY_HEADERS
from kong_ace.errors import ConfigError
from tests.conftest import PARTNER_KEY, WEB_KEY

FLIGHTS = "/flights/v1/flights"
BOOKINGS = "/bookings/v2/bookings"


def req(path: str, key: str | None = None, method: str = "GET", **headers: Any) -> Request:
    h = dict(headers)
    if key is not None:
        h["apikey"] = key
    return Request(method, path, h, target=path)


def both(config: dict[str, Any], request: Request, **monitor: Any) -> tuple[Any, Any]:
    """The enforce and the monitor decision of one request, on fresh counters."""
    enforced = Enforcer(config).decide(request)
    monitored = Enforcer({**config, "enforcement": "monitor", **monitor}).decide(request)
    return enforced, monitored


@pytest.mark.parametrize(("path", "key", "method", "status", "reason"), [
    (FLIGHTS, None, "GET", 401, "no_key"),
    (FLIGHTS, "nope", "GET", 401, "unknown_key"),
    (BOOKINGS, WEB_KEY, "GET", 403, "not_registered"),
    (BOOKINGS, PARTNER_KEY, "GET", 403, "pending"),
    ("/nowhere", WEB_KEY, "GET", 404, "no_operation"),
    ("/flights/v1/flights/BA1", WEB_KEY, "PUT", 405, "method_not_allowed"),
])
def test_every_denial_becomes_a_would_deny_admission(config, path, key, method, status,
                                                      reason) -> None:
    enforced, monitored = both(config, req(path, key, method), monitor_header=True)
    assert (enforced.allowed, enforced.status) == (False, status)
    assert monitored.allowed and monitored.status is None and monitored.body is None
    assert monitored.would_deny == enforced
    # Nobody's identity goes upstream; only the would-be outcome, when asked for.
    assert monitored.upstream_headers == {"X-ACE-Would-Deny": f"{status} {reason}"}
    assert set(IDENTITY_HEADERS) <= set(monitored.clear_upstream_headers)
    assert monitored.consumer is None and monitored.package is None
    assert not monitored.headers  # no WWW-Authenticate, Allow, Retry-After to the client


def test_admitted_requests_are_the_same_in_both_modes(config) -> None:
    enforced, monitored = both(config, req(FLIGHTS, WEB_KEY))
    assert enforced == monitored and monitored.would_deny is None


def test_no_header_unless_asked(config) -> None:
    _, monitored = both(config, req(FLIGHTS))
    assert monitored.upstream_headers == {}


def test_rate_limits_still_count_and_a_would_be_429_is_recorded(config) -> None:
    config["enforcement"] = "monitor"
    enf = Enforcer(config, clock=lambda: 1_000_000.0)
    seats = "/flights/v1/flights/BA1/seats"
    first = [enf.decide(req(seats, WEB_KEY)) for _ in range(4)]
    assert [d.would_deny is None for d in first] == [True, True, True, False]
    assert first[2].headers["RateLimit-Remaining"] == "0"
    assert first[3].allowed and first[3].would_deny.status == 429


def test_request_confusion_stays_enforced_unless_monitored_too(config) -> None:
    confused = req("/flights/v1/flights%2F1", WEB_KEY)
    enforced, monitored = both(config, confused)
    assert enforced.status == 400 and monitored == enforced
    _, opted = both(config, confused, monitor_request_confusion=True)
    assert opted.allowed and opted.would_deny == enforced


def test_hide_credentials_hides_the_key_of_a_would_deny(config) -> None:
    config["hide_credentials"] = True
    _, monitored = both(config, Request("GET", BOOKINGS, {"apikey": WEB_KEY},
                                        {"apikey": WEB_KEY}, target=BOOKINGS + "?apikey=x"))
    assert "apikey" in monitored.clear_upstream_headers
    assert "apikey" in monitored.clear_query


def test_method_override_is_still_stripped(config) -> None:
    _, monitored = both(config, req(FLIGHTS, None, **{"X-HTTP-Method-Override": "DELETE"}))
    assert monitored.would_deny.status == 401
    assert "x-http-method-override" in monitored.clear_upstream_headers


def test_another_plugins_consumer_headers_stay_on_a_would_deny(config) -> None:
    r = Request("GET", BOOKINGS, {"x-consumer-username": "mobile"}, target=BOOKINGS,
                consumer={"id": "c1", "username": "stranger"}, credential=True)
    _, monitored = both(config, r)
    assert monitored.would_deny.status == 401
    assert "x-consumer-username" not in monitored.clear_upstream_headers
    forged = req(BOOKINGS, None, **{"x-consumer-username": "mobile"})
    _, monitored = both(config, forged)
    assert "x-consumer-username" in monitored.clear_upstream_headers


# --- the most specific setting wins ----------------------------------------------------------


def test_api_setting_beats_top_level(config) -> None:
    config["apis"][1]["enforcement"] = "monitor"  # bookings
    enf = Enforcer(config)
    assert enf.decide(req(BOOKINGS, WEB_KEY)).would_deny.status == 403
    assert enf.decide(req(FLIGHTS)).status == 401  # flights still enforced
    assert enf.decide(req("/nowhere")).status == 404  # no operation: the top level


def test_package_setting_beats_api_setting(config) -> None:
    config["enforcement"] = "monitor"
    config["packages"][1]["enforcement"] = "enforce"  # travel-premium holds every operation
    enf = Enforcer(config)
    assert enf.decide(req(BOOKINGS, WEB_KEY)).status == 403
    assert enf.decide(req("/nowhere")).would_deny.status == 404


def test_packages_that_disagree_enforce(config) -> None:
    config["packages"][0]["enforcement"] = "monitor"  # flights-basic
    enf = Enforcer(config)
    assert enf.decide(req(FLIGHTS)).would_deny.status == 401  # only flights-basic says
    config["packages"][1]["enforcement"] = "enforce"  # travel-premium has listFlights too
    assert Enforcer(config).decide(req(FLIGHTS)).status == 401


def test_a_registration_denial_follows_the_registrations_package(config) -> None:
    # partner-portal's only registration (travel-premium) is pending: its package decides,
    # whatever the bookings API says.
    config["apis"][1]["enforcement"] = "monitor"
    config["packages"][1]["enforcement"] = "enforce"
    assert Enforcer(config).decide(req(BOOKINGS, PARTNER_KEY)).status == 403
    config["packages"][1]["enforcement"] = "monitor"
    config["apis"][1]["enforcement"] = "enforce"
    d = Enforcer(config).decide(req(BOOKINGS, PARTNER_KEY))
    assert d.would_deny.status == 403 and d.would_deny.message == "registration pending approval"


def test_a_bad_setting_names_its_place(config) -> None:
    config["packages"][1]["enforcement"] = "shadow"
    with pytest.raises(ConfigError, match=r"packages\[1\]\.enforcement: 'shadow' is not one of"):
        Enforcer(config)


def test_enforce_everywhere_costs_no_review(config) -> None:
    assert Enforcer(config)._reviewed is False
    config["apis"][0]["enforcement"] = "enforce"
    assert Enforcer(config)._reviewed is False
