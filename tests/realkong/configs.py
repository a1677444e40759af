"""Named configs of the conformance table (cases.json): the ace config and the Kong around it.

Each config runs twice: as a declarative config on the real Kong, and on the harness
(``kong_ace.testing.KongNode``), where :func:`key_auth` plays the key-auth plugin the real
Kong runs on the ``keyauth.example`` and ``anon.example`` routes.
"""

from __future__ import annotations

from typing import Any

from tests.core.confusion_catalog import WEB_KEY, confusion_config
from tests.gateway.support import KEYS, MOBILE, outcomes_config

CONF_MOBILE_ID = "5d6e7f80-1111-4222-8333-999900001111"  # confusion_catalog.MOBILE's id
ANON = {"id": "9d0c1f7e-1111-4222-8333-444455556666", "username": "anon"}
KONG_ANON = {"id": "0a0b0c0d-1111-4222-8333-444455556666", "username": "kong-anon"}
KONG_KEY = "kong-key-mobile-0123456789"  # a key-auth credential of consumer "mobile"
KONG_CREDENTIAL_ID = "0c5e8a8e-53f4-4bb4-9d3c-6f1c2a7e9b10"
KEYAUTH_HOST = "keyauth.example"  # route with key-auth (x-kong-key), no anonymous
ANON_HOST = "anon.example"  # route with key-auth whose anonymous is kong-anon

ALL_KEYS = {**KEYS, "web": WEB_KEY, "kong": KONG_KEY}


def _ace(name: str) -> dict[str, Any]:
    builders = {
        "outcomes": lambda: outcomes_config(),
        "if_present_hide": lambda: outcomes_config(match_policy="if_present",
                                                   hide_credentials=True),
        "anonymous": lambda: outcomes_config(anonymous="anon"),
        "confusion": lambda: confusion_config(),
        "confusion_unescape": lambda: confusion_config(
            path_with_escaped_slashes_action="unescape"),
        "confusion_keep": lambda: confusion_config(path_with_escaped_slashes_action="keep"),
        "confusion_override_reject": lambda: confusion_config(method_override_action="reject"),
        "confusion_override_follow": lambda: confusion_config(method_override_action="follow"),
        "ietf_headers": lambda: outcomes_config(rate_limiting={"headers": "both"}),
        "monitor": lambda: outcomes_config(enforcement="monitor", monitor_header=True),
        "deprecated": lambda: _deprecated(),
    }
    return builders[name]()  # type: ignore[no-any-return]


def _deprecated() -> dict[str, Any]:
    config = outcomes_config()
    config["apis"][0].update(deprecated="2026-01-01T00:00:00Z", sunset="2030-01-01T00:00:00Z",
                             deprecation_link="https://example.com/flights-v2")
    return config


def mobile_id(name: str) -> str:
    """The id of consumer "mobile" in config ``name`` (the two catalogs use different ids)."""
    return CONF_MOBILE_ID if name.startswith("confusion") else MOBILE["id"]


def consumers(name: str) -> list[dict[str, Any]]:
    """Kong's consumers for config ``name``: what load_consumer finds."""
    return [{"id": mobile_id(name), "username": "mobile"}, ANON, KONG_ANON]


def declarative(name: str, upstream_url: str) -> dict[str, Any]:
    """The real Kong's declarative config for ``name`` (companions added by the node's mode)."""
    keyauth = {"name": "key-auth", "config": {"key_names": ["x-kong-key"]}}
    anon_keyauth = {"name": "key-auth",
                    "config": {"key_names": ["x-kong-key"], "anonymous": KONG_ANON["username"]}}
    service = {
        "name": "upstream", "url": upstream_url,
        "routes": [
            {"name": "all", "paths": ["/"], "strip_path": False},
            {"name": "keyauth", "hosts": [KEYAUTH_HOST], "paths": ["/"], "strip_path": False,
             "plugins": [keyauth]},
            {"name": "anon", "hosts": [ANON_HOST], "paths": ["/"], "strip_path": False,
             "plugins": [anon_keyauth]},
        ],
    }
    mobile = {"id": mobile_id(name), "username": "mobile",
              "keyauth_credentials": [{"id": KONG_CREDENTIAL_ID, "key": KONG_KEY}]}
    return {
        "_format_version": "3.0",
        "services": [service],
        "consumers": [mobile, ANON, KONG_ANON],
        "plugins": [{"name": "ace", "config": _ace(name)}],
    }


def ace(name: str) -> dict[str, Any]:
    """The ace plugin config of ``name`` (for the harness)."""
    return _ace(name)


def key_auth(name: str, headers: list[list[str]]) -> tuple[Any, Any, list[list[str]]]:
    """Kong's key-auth on the keyauth/anon routes (key-auth/handler.lua set_consumer).

    Returns (consumer, credential, request headers after key-auth set its own).
    """
    host = next((v for k, v in headers if k.lower() == "host"), "")
    if host not in (KEYAUTH_HOST, ANON_HOST):
        return None, None, headers
    key = next((v for k, v in headers if k.lower() == "x-kong-key"), None)
    if key == KONG_KEY:
        consumer: dict[str, Any] = {"id": mobile_id(name), "username": "mobile"}
        credential: dict[str, Any] | None = {"id": KONG_CREDENTIAL_ID,
                                              "consumer": {"id": consumer["id"]}}
    elif host == ANON_HOST and key is None:
        consumer, credential = dict(KONG_ANON), None
    else:
        raise ValueError("a key-auth refusal is not a case for ace")
    names = {"x-consumer-id", "x-consumer-custom-id", "x-consumer-username",
             "x-credential-identifier", "x-anonymous-consumer"}
    out = [[k, v] for k, v in headers if k.lower() not in names]
    out.append(["X-Consumer-ID", consumer["id"]])
    out.append(["X-Consumer-Username", consumer["username"]])
    if credential:
        out.append(["X-Credential-Identifier", credential["id"]])
    else:
        out.append(["X-Anonymous-Consumer", "true"])
    return consumer, credential, out
