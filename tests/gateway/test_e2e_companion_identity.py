"""Companion mode clears only the identity headers the client sent: none ever reaches upstream.

The verdict names just the spellings the core found in ace-context's table (issue #21: each
name costs Kong a MessagePack.lua string and a clear_header); these cases pin that ACE still
owns every spelling of its identity headers on every request (SPEC §8), through the real
kong-ace-server and the harness's companions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kong_ace.testing import KongNode, KongRequest, PluginServerProcess, Result
from tests.core.confusion_catalog import MOBILE, WEB_KEY, confusion_config

IDENTITY = {"x-ace-operation-id", "x-ace-application-id", "x-ace-package", "x-ace-api"}


@pytest.fixture(scope="module")
def node() -> Iterator[KongNode]:
    with PluginServerProcess() as srv:
        n = KongNode(srv.socket, confusion_config(), consumers=[MOBILE], companions=True)
        yield n
        n.close()


def send(node: KongNode, path: str, headers: dict[str, Any], key: bool = True) -> Result:
    h: dict[str, Any] = {"host": "api.example.com", **({"apikey": WEB_KEY} if key else {})}
    return node.request(KongRequest(method="GET", path=path, headers={**h, **headers}))


def identity_seen(r: Result) -> dict[str, list[Any]]:
    """Every value of the upstream's identity headers, by '-'-spelled lower-cased name."""
    seen: dict[str, list[Any]] = {}
    for name, values in r.upstream_headers.items():
        canon = name.lower().replace("_", "-")
        if canon in IDENTITY:
            seen.setdefault(canon, []).extend(values)
    return seen


FORGED = {"X-ACE-Operation-ID": "forged", "x_ace_application_id": "forged",
          "X_ACE-Package": "forged", "x-ace-api": "forged", "X_Ace_Api": "forged"}


def test_an_admission_replaces_or_clears_every_forged_spelling(node: KongNode) -> None:
    r = send(node, "/files/users/7", FORGED)
    assert r.status == 200 and r.proxied
    seen = identity_seen(r)
    assert seen == {"x-ace-operation-id": ["getUser"], "x-ace-application-id": ["web-app"],
                    "x-ace-package": [seen["x-ace-package"][0]]}, seen
    assert "forged" not in seen["x-ace-package"]


def test_a_pass_through_clears_every_forged_spelling(node: KongNode) -> None:
    r = send(node, "/elsewhere", FORGED, key=False)
    assert r.proxied and identity_seen(r) == {}


def test_a_plain_admission_sets_the_identity_headers(node: KongNode) -> None:
    r = send(node, "/files/users/7", {})
    assert r.status == 200
    assert identity_seen(r)["x-ace-operation-id"] == ["getUser"]


def test_a_forged_header_past_the_1000th_line_is_cleared_on_pass_through(
        node: KongNode) -> None:
    many = {f"x-filler-{i}": "v" for i in range(1000)}
    r = send(node, "/elsewhere", {**many, "X_ACE_Application_ID": "forged"}, key=False)
    assert r.proxied and identity_seen(r) == {}
