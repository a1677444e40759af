"""Companion mode specifics (SPEC §9), through the real server: the companions config field,
the log summary, and a verdict for every outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kong_ace.core.enforcer import Enforcer
from kong_ace.errors import ConfigError
from kong_ace.testing import KongNode, PluginServerProcess
from tests.gateway.support import COMPANION_CALLS, KEYS, MOBILE, get, outcomes_config

UNEXPECTED = {"message": "An unexpected error occurred"}


@pytest.fixture(scope="module")
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


def test_required_companions_missing_is_a_500(server: PluginServerProcess) -> None:
    config = outcomes_config(companions="required")
    classic = KongNode(server.socket, config, consumers=[MOBILE])
    r = get(classic, "/flights/v1/flights", "good")
    assert (r.status, r.body, r.proxied) == (500, UNEXPECTED, False)
    # Decides on nothing, and tells Kong's error log why.
    assert r.pdk_calls == ["kong.nginx.get_ctx", "kong.log.err", "kong.response.exit"]
    assert any("companions are required" in msg for level, msg in r.logs if level == "err")
    with_companions = KongNode(server.socket, config, consumers=[MOBILE], companions=True)
    r = get(with_companions, "/flights/v1/flights", "good")
    assert (r.status, r.pdk_calls) == (200, COMPANION_CALLS)
    classic.close()
    with_companions.close()


def test_optional_is_the_default_and_other_values_are_config_errors() -> None:
    assert not Enforcer(outcomes_config()).catalog.companions_required
    assert Enforcer(outcomes_config(companions="required")).catalog.companions_required
    with pytest.raises(ConfigError, match="companions: 'always' is not one of"):
        Enforcer(outcomes_config(companions="always"))


def test_the_log_summary_names_the_outcome_never_the_key(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(match_policy="if_present"),
                    consumers=[MOBILE], companions=True)
    ok = get(node, "/flights/v1/flights", "good")
    assert ok.serialized["ace"] == {"outcome": "allowed", "reason": "allowed",
                                    "operation": "listFlights",
                                    "application": "good", "package": "basic", "api": "flights",
                                    "remaining": int(ok.headers["RateLimit-Remaining"])}
    denied = get(node, "/bookings/v2/bookings", "pending")
    assert denied.serialized["ace"] == {"outcome": "denied", "status": 403, "reason": "pending",
                                        "operation": "listBookings", "application": "pending"}
    passed = get(node, "/elsewhere", None)
    assert (passed.status, passed.serialized["ace"]) == (200, {"outcome": "passed",
                                                                "reason": "pass_through"})
    for r in (ok, denied, passed):
        assert not any(k in repr(r.serialized) for k in KEYS.values())
    node.close()


def test_forged_identity_headers_are_cleared_in_every_spelling(
        server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(match_policy="if_present"),
                    consumers=[MOBILE], companions=True)
    forged = {"X-ACE-Application-ID": "forged", "X-ACE-API": "forged"}
    for path, key in (("/flights/v1/flights", "good"), ("/elsewhere", None)):
        r = get(node, path, key, headers=forged)
        assert r.status == 200
        assert r.upstream("X-ACE-API") is None
        assert r.upstream("X-ACE-Application-ID") == ("good" if key else None)
    node.close()
