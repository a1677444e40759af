"""PDK round trips per request: each PDK call is one RPC between Kong and the plugin server.

Classic mode starts with the ``kong.nginx.get_ctx`` that finds no ace-context table (SPEC §9),
then reads through the PDK; companion mode is that read and one ``set_ctx``, whatever happens.
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
    kong_yml_config,
    outcomes_config,
)

WEB_KEY = "ace_web_pGS1PzevuWwCqQ8VdIDE49MqSKjfG0VF"  # the demo key documented in kong.yml


@pytest.fixture(scope="module")
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


def test_example_config_allowed_6_denied_5(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, kong_yml_config(), consumers=[MOBILE])
    ok = get(node, "/flights/v1/flights", WEB_KEY)
    assert ok.status == 200
    assert ok.pdk_calls == ["kong.nginx.get_ctx", "kong.nginx.get_var",
                            "kong.request.get_headers", "kong.client.get_consumer",
                            "kong.service.request.set_headers", "kong.response.set_headers"]
    assert ok.rpc_calls == 7  # HandleEvent + one Step per PDK call
    denied = get(node, "/flights/v1/flights", None)
    assert denied.status == 401
    assert denied.pdk_calls == ["kong.nginx.get_ctx", "kong.nginx.get_var",
                                "kong.request.get_headers", "kong.client.get_consumer",
                                "kong.response.exit"]
    assert denied.rpc_calls == 5  # exit gets no Step back
    unmatched = get(node, "/not/an/api", WEB_KEY)  # 404: no consumer needed
    assert len(unmatched.pdk_calls) == 4
    node.close()


def test_without_consumer_mapping_allowed_5_denied_4(server: PluginServerProcess) -> None:
    config = outcomes_config()
    config["applications"] = [a for a in config["applications"] if not a.get("consumer")]
    node = KongNode(server.socket, config)
    assert len(get(node, "/flights/v1/flights", KEYS["good"]).pdk_calls) == 5
    assert len(get(node, "/flights/v1/flights", None).pdk_calls) == 4
    node.close()


@pytest.mark.parametrize("policy", ["required", "if_present"])
def test_companion_mode_is_two_calls_allowed_denied_or_passed(server: PluginServerProcess,
                                                             policy: str) -> None:
    node = KongNode(server.socket, {**kong_yml_config(), "match_policy": policy},
                    consumers=[MOBILE], companions=True)
    cases = [
        (get(node, "/flights/v1/flights", WEB_KEY), 200),  # allowed, rate-limit headers
        (get(node, "/flights/v1/flights", None), 401),  # denied
        (get(node, "/bookings/v2/bookings", headers={"x-mobile-key": "k"}, consumer=MOBILE,
             credential={"id": "c1"}), 200),  # a consumer mapped to an application
        (get(node, "/bookings/v2/bookings", "ace_partner_oeA86pM1k4gy-nBGDpb-ueAM4lJg-Zpt"),
         403),
        (get(node, "/not/an/api", WEB_KEY), 404 if policy == "required" else 200),
    ]
    for r, status in cases:
        assert r.status == status
        assert r.pdk_calls == COMPANION_CALLS
        assert r.rpc_calls == 3  # HandleEvent, the Step with the table, the Step after set_ctx
    node.close()
    # Authenticating the mapped consumer by key happens in ace-guard: still two.
    config = outcomes_config()
    node = KongNode(server.socket, config, consumers=[MOBILE], companions=True)
    r = get(node, "/bookings/v2/bookings/B1", KEYS["mobile"])
    assert (r.status, r.consumer, r.pdk_calls) == (200, MOBILE, COMPANION_CALLS)
    node.close()
    # Scoped APIs cost nothing more either.
    config["apis"][0].update(service="flights", hosts=["api.example.com"])
    node = KongNode(server.socket, config, consumers=[MOBILE], companions=True)
    r = get(node, "/flights/v1/flights", KEYS["good"], service={"id": "s1", "name": "flights"},
            headers={"host": "api.example.com"})
    assert (r.status, r.pdk_calls) == (200, COMPANION_CALLS)
    node.close()


def test_service_scoped_api_costs_one_more_read(server: PluginServerProcess) -> None:
    config = outcomes_config()
    config["applications"] = [a for a in config["applications"] if not a.get("consumer")]
    config["apis"][0].update({"service": "flights"})
    node = KongNode(server.socket, config)
    r = get(node, "/flights/v1/flights", KEYS["good"], service={"id": "s1", "name": "flights"},
            host="api.example.com")
    assert r.status == 200
    assert "kong.router.get_service" in r.pdk_calls and len(r.pdk_calls) == 6
    node.close()


def test_host_scoped_api_costs_nothing_more(server: PluginServerProcess) -> None:
    # SPEC §8: hosts scoping reads the Host header, which comes with the headers (before #11,
    # kong.request.get_host() cost one more round trip and read nginx's $host instead).
    config = outcomes_config()
    config["applications"] = [a for a in config["applications"] if not a.get("consumer")]
    config["apis"][0].update({"hosts": ["api.example.com"]})
    node = KongNode(server.socket, config)
    r = get(node, "/flights/v1/flights", KEYS["good"], host="api.example.com")
    assert r.status == 200
    assert "kong.request.get_host" not in r.pdk_calls and len(r.pdk_calls) == 5
    other = get(node, "/flights/v1/flights", KEYS["good"], headers={"host": "other.example"})
    assert other.status == 404  # the Host header decides the scope
    node.close()


def test_consumer_of_another_plugin_costs_one_credential_read(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), consumers=[MOBILE])
    r = get(node, "/bookings/v2/bookings", consumer=MOBILE, credential=MOBILE_CREDENTIAL)
    assert r.status == 200
    assert r.pdk_calls == ["kong.nginx.get_ctx", "kong.nginx.get_var",
                           "kong.request.get_headers", "kong.client.get_consumer",
                           "kong.client.get_credential",
                           "kong.service.request.set_headers"]  # premium: no limits
    # Marked anonymous by its auth plugin: known without the credential read.
    anon = get(node, "/bookings/v2/bookings", consumer=MOBILE,
               headers={"x-anonymous-consumer": "true"})
    assert anon.status == 401
    assert "kong.client.get_credential" not in anon.pdk_calls
    node.close()
