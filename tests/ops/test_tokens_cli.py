"""kong-ace check and explain with auth strategies: strategies listed, claims shown, token never."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kong_ace.core import decision as messages
from tests.conftest import WEB_KEY
from tests.idp import IdP
from tests.ops.helpers import ace_plugin, as_json, kong_ace, write_deck


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    with IdP() as server:
        yield server


def with_tokens(idp: IdP, jwks_uri: str | None = None) -> Any:
    def edit(data: dict[str, Any]) -> None:
        config = ace_plugin(data)["config"]
        config["auth_strategies"] = [{"name": "corp", "type": "openid_connect",
                                      "issuer": idp.issuer,
                                      "jwks_uri": jwks_uri or idp.jwks_uri,
                                      "audience": ["flights-api"], "scopes": ["flights:read"]}]
        config["packages"][0]["auth_strategy"] = "corp"  # flights-basic
        config["applications"][0]["client_ids"] = ["web-client"]  # web-app
        config["packages"].append({"name": "status", "auth_strategy": "none",
                                   "operations": [{"api": "flights",
                                                   "operation_id": "exportManifest"}]})
    return edit


def explain(deck: Path, *args: str) -> tuple[int, dict, str]:
    base = ["explain", str(deck), *args]
    proc = kong_ace(*base, "--json")
    text = kong_ace(*base)
    assert text.returncode == proc.returncode, text.stderr
    return proc.returncode, as_json(proc), text.stdout + text.stderr


def steps(report: dict) -> dict[str, dict]:
    return {s["step"]: s for s in report["steps"]}


def test_check_lists_strategies_and_who_uses_them(tmp_path: Path, idp: IdP) -> None:
    deck = write_deck(tmp_path, with_tokens(idp))
    proc = kong_ace("check", str(deck), "--json")
    assert proc.returncode == 0, proc.stderr
    got = {e["name"]: e for e in as_json(proc)["auth_strategies"]}
    assert got["corp"]["packages"] == ["flights-basic"]
    assert got["corp"]["issuer"] == idp.issuer and got["corp"]["signing_keys"] == 2
    assert got["default"]["packages"] == ["travel-premium"]
    assert got["default"]["apis"] == ["flights", "bookings"]
    assert got["none"]["packages"] == ["status"]
    text = kong_ace("check", str(deck)).stdout
    assert "Auth strategies" in text and "openid_connect" in text and "flights-basic" in text


def test_check_reports_an_unreachable_idp(tmp_path: Path, idp: IdP) -> None:
    deck = write_deck(tmp_path, with_tokens(idp, jwks_uri="http://127.0.0.1:9/jwks"))
    proc = kong_ace("check", str(deck), "--json")
    assert proc.returncode == 0  # the gateway would start; the finding says what is wrong
    report = as_json(proc)
    assert any("no signing keys" in f and "'corp'" in f for f in report["findings"])


def test_explain_shows_claims_never_the_token(tmp_path: Path, idp: IdP) -> None:
    deck = write_deck(tmp_path, with_tokens(idp))
    token = idp.token()
    code, report, text = explain(deck, "GET", "/flights/v1/flights",
                                 "-H", f"Authorization: Bearer {token}")
    assert code == 0 and report["allowed"]
    got = steps(report)
    assert "openid_connect 'corp'" in got["strategy"]["outcome"]
    app = got["application"]
    assert app["application"] == "web-app" and app["client_id"] == "web-client"
    assert app["claims"]["iss"] == idp.issuer and app["claims"]["scope"] == "flights:read"
    assert got["registration"]["target"] == "flights-basic"
    assert "client_id=web-client" in text
    sig = token.split(".")[2]
    for out in (text, str(report)):
        assert token not in out and sig not in out and token.split(".")[1] not in out


@pytest.mark.parametrize(
    ("claims", "status", "message", "reason"),
    [
        ({"aud": "other"}, 401, messages.INVALID_TOKEN, "audience"),
        ({"client_id": "stranger"}, 401, messages.INVALID_TOKEN, "belongs to no application"),
        ({"scope": "other"}, 403, messages.INSUFFICIENT_SCOPE, "lacks scope"),
        ({"now": 1_000_000_000}, 401, messages.INVALID_TOKEN, "expired at"),
    ],
)
def test_explain_says_why_a_token_is_refused(tmp_path: Path, idp: IdP, claims: dict,
                                             status: int, message: str, reason: str) -> None:
    deck = write_deck(tmp_path, with_tokens(idp))
    token = idp.token(**claims)
    code, report, text = explain(deck, "GET", "/flights/v1/flights",
                                 "-H", f"Authorization: Bearer {token}")
    assert code == 1 and (report["status"], report["message"]) == (status, message)
    assert reason in steps(report)["application"]["outcome"]
    assert token not in text and token.split(".")[2] not in text


def test_explain_key_to_token_only_and_open_package(tmp_path: Path, idp: IdP) -> None:
    def edit(data: dict[str, Any]) -> None:
        with_tokens(idp)(data)
        ace_plugin(data)["config"]["packages"][1]["auth_strategy"] = "corp"  # travel-premium

    deck = write_deck(tmp_path, edit)
    # With both packages on tokens, listFlights accepts tokens only: the key is refused (401).
    code, report, text = explain(deck, "GET", "/flights/v1/flights", "-H", f"apikey: {WEB_KEY}")
    assert code == 1 and report["message"] == messages.TOKEN_REQUIRED
    assert "accepts access tokens only" in steps(report)["application"]["outcome"]
    assert WEB_KEY not in text
    code, report, _ = explain(deck, "GET", "/flights/v1/flights/AF1/manifest.json")
    assert code == 0 and "open access" in steps(report)["application"]["outcome"]
