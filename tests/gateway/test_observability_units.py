"""Pieces of the observability edge that need no server: reasons, listener rules, hooks."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kong_ace import observe
from kong_ace.core import decision as d
from kong_ace.core import target as t
from kong_ace.core.decision import Decision, deny
from kong_ace.core.jwks import JwksError, KeySet
from kong_ace.gateway import metrics
from kong_ace.gateway.summary import REASONS, reason, summary
from kong_ace.limits.breaker import CircuitBreaker
from kong_ace.ops.output import Output
from kong_ace.ops.status import render


def test_every_core_message_has_its_own_reason() -> None:
    assert len(set(REASONS.values())) == len(REASONS)
    assert reason(deny(403, d.REGISTRATION_MESSAGES["revoked"])) == "registration_revoked"
    assert reason(deny(401, d.KEY_REVOKED)) == "revoked"


def test_every_request_confusion_refusal_is_named() -> None:
    messages = [value for name, value in vars(t).items()
                if name.isupper() and isinstance(value, str) and " " in value]
    assert t.BODY_OVERRIDE in messages and t.UNINSPECTED_BODY in messages
    assert [m for m in messages if reason(deny(400, m)) == "other"] == []


@pytest.mark.parametrize(("challenge", "expected"), [
    ('Bearer realm="kong", error="invalid_token"', "invalid_token"),
    ('Bearer realm="kong", error="insufficient_scope"', "insufficient_scope"),
    ('Bearer realm="kong"', "no_token"),
    ('Key realm="kong"', "other"),
])
def test_denials_added_later_name_themselves_by_their_challenge(challenge: str,
                                                                expected: str) -> None:
    assert reason(deny(401, "a message this version does not know",
                       {"WWW-Authenticate": challenge})) == expected


def test_allowed_reasons() -> None:
    assert reason(d.PASS) == "pass_through"
    assert reason(Decision(True, operation_id="op")) == "no_application"
    assert reason(Decision(True, operation_id="op", application_id="app")) == "allowed"


def test_summary_leaves_out_what_is_unknown() -> None:
    assert summary(deny(404, d.NO_OPERATION)) == {"outcome": "denied", "status": 404,
                                                 "reason": "no_operation"}
    assert summary(d.PASS) == {"outcome": "passed", "reason": "pass_through"}


@pytest.mark.parametrize("address", ["127.0.0.1:9542", "localhost:9542", "[::1]:9542",
                                     "127.0.0.2:1"])
def test_loopback_listeners_are_accepted(address: str) -> None:
    host, port = metrics.parse_listen(address)
    assert port in (9542, 1) and host in ("127.0.0.1", "localhost", "::1", "127.0.0.2")


@pytest.mark.parametrize("address", ["0.0.0.0:9542", "[::]:9542", "10.0.0.1:9542",
                                     "metrics.internal:9542"])
def test_other_listeners_need_the_explicit_flag(address: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        metrics.parse_listen(address)
    assert metrics.parse_listen(address, allow_remote=True)[1] == 9542


@pytest.mark.parametrize("address", ["9542", ":9542", "127.0.0.1:", "127.0.0.1:70000",
                                     "127.0.0.1:http"])
def test_malformed_listeners_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        metrics.parse_listen(address)


def scrape(*collectors) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors:
        registry.register(c)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


class Families:
    def __init__(self, source) -> None:
        self.source = source

    def collect(self):
        return self.source.families()


def test_a_breaker_reported_through_limits_reaches_the_gauge_and_status() -> None:
    stores = metrics.Stores()
    observe.on_breaker_change(stores.breaker)
    observe.breaker_changed("redis-test", observe.OPEN)
    got = scrape(Families(stores))
    state = "kong_ace_store_breaker_state"
    assert got[(state, (("state", "open"), ("store", "redis-test")))] == 1
    assert got[(state, (("state", "closed"), ("store", "redis-test")))] == 0
    (entry,) = stores.status()
    assert (entry["Store"], entry["Breaker"], entry["Healthy"]) == ("redis-test", "open", False)
    observe.breaker_changed("redis-test", observe.CLOSED)
    assert stores.status()[0]["Healthy"] is True


def test_the_application_label_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_SERIES", 3)
    rec = metrics.Recorder(applications=True)
    for i in range(6):
        rec.decision(Decision(True, operation_id="op", application_id=f"app-{i}", api="a"),
                     None, 0.00002, 5)
    got = scrape(Families(rec))
    apps = sorted(dict(k[1])["application"] for k in got if k[0] == "kong_ace_decisions_total")
    assert apps == ["_other", "app-0", "app-1", "app-2"]
    assert got[("kong_ace_decisions_total", (
        ("api", "a"), ("application", "_other"), ("operation", "op"), ("package", ""),
        ("reason", "allowed"), ("status", "proxied")))] == 3
    assert got[("kong_ace_decision_seconds_bucket", (("le", "2.5e-05"),))] == 6
    assert got[("kong_ace_decision_seconds_bucket", (("le", "1e-05"),))] == 0
    assert got[("kong_ace_pdk_calls_per_request_sum", ())] == 30


def test_idp_fetches_reported_for_an_issuer_reach_metrics_and_status(
        capsys: pytest.CaptureFixture[str]) -> None:
    idps = metrics.IdPs(clock=lambda: 1000.0)
    observe.on_idp_fetch(lambda s, sec, err, what: idps.call(s, what, sec, err))
    observe.idp_fetched("https://corp-sso.example", 0.04)
    observe.idp_fetched("https://corp-sso.example", 2.0, "TimeoutError")
    got = scrape(Families(idps))
    issuer = ("issuer", "https://corp-sso.example")
    assert got[("kong_ace_idp_fetches_total", (issuer, ("op", "jwks"), ("outcome", "ok")))] == 1
    assert got[("kong_ace_idp_fetches_total", (issuer, ("op", "jwks"), ("outcome", "error")))] == 1
    assert got[("kong_ace_idp_fetch_seconds_count", (issuer, ("op", "jwks")))] == 2
    (entry,) = idps.status()
    assert (entry["Issuer"], entry["Errors"], entry["Healthy"],
            entry["LastErrorMessage"]) == ("https://corp-sso.example", 1, False, "TimeoutError")
    plugin = {"Instances": [], "Events": 0, "IdPs": idps.status()}
    render(Output(), "/x.sock", {"Pid": 1, "Plugins": {"ace": plugin}}, plugin)
    out = capsys.readouterr().out
    assert "Identity providers (1)" in out and "https://corp-sso.example" in out
    assert "TimeoutError" in out


def test_a_key_set_reports_each_jwks_fetch() -> None:
    idps = metrics.IdPs()
    observe.on_idp_fetch(lambda s, sec, err, what: idps.call(s, what, sec, err))
    answers: list[object] = [b'{"keys": []}', JwksError("https://idp.test/jwks: HTTP 503")]

    def fetch(url: str, timeout: float) -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    keys = KeySet("https://idp.test", jwks_uri="https://idp.test/jwks", fetch=fetch)
    assert keys.refresh() and not keys.refresh()
    (entry,) = idps.status()
    assert (entry["Issuer"], entry["Calls"], entry["Errors"], entry["Healthy"],
            entry["LastErrorMessage"]) == ("https://idp.test", 2, 1, False, "JwksError")


def test_the_rate_limit_breaker_reports_each_state_change() -> None:
    seen: list[tuple[str, str]] = []
    observe.on_breaker_change(lambda store, state: seen.append((store, state)))
    now = [0.0]
    breaker = CircuitBreaker(lambda: now[0], failures=2, open_seconds=5.0)
    breaker.failure()
    assert seen == []
    breaker.failure()  # the second slow failure opens it
    assert seen == [("redis", "open")]
    assert not breaker.allow()
    now[0] = 5.0
    assert breaker.allow()  # the probe
    breaker.success()
    assert seen == [("redis", "open"), ("redis", "half_open"), ("redis", "closed")]


def test_would_deny_and_deprecated_calls_carry_the_application_when_labelled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_SERIES", 2)
    rec = metrics.Recorder(applications=True)
    for i in range(3):
        would = deny(403, d.NOT_REGISTERED, operation_id="op", application_id=f"app-{i}")
        rec.decision(Decision(True, operation_id="op", application_id=f"app-{i}",
                              would_deny=would), "flights", 0.00002, 2)
        rec.deprecated_call(Decision(True, operation_id="op", application_id=f"app-{i}",
                                     package="basic", api="flights"), "flights")
    got = scrape(Families(rec))
    would = {dict(k[1])["application"]: v for k, v in got.items()
             if k[0] == "kong_ace_would_deny_total"}
    assert would == {"app-0": 1, "app-1": 1, "_other": 1}
    assert got[("kong_ace_would_deny_total", (
        ("api", "flights"), ("application", "app-0"), ("operation", "op"),
        ("reason", "not_registered"), ("status", "403")))] == 1
    deprecated = {dict(k[1])["application"]: v for k, v in got.items()
                  if k[0] == "kong_ace_deprecated_calls_total"}
    assert deprecated == {"app-0": 1, "app-1": 1, "_other": 1}
    assert got[("kong_ace_decisions_total", (
        ("api", "flights"), ("application", "app-0"), ("operation", "op"), ("package", ""),
        ("reason", "would_deny"), ("status", "proxied")))] == 1
