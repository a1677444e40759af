"""`kong-ace explain`: what happens to one request, step by step, computed in-process by the core.

The final answer is always `Enforcer.decide`; the steps before it are recomputed from the core's
public pieces (router model, matcher, credential lookup, registrations) to say *why*. Keys are
never printed: only where they were found and which application they belong to.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

from kong_ace.core import target as t
from kong_ace.core.auth import Authenticator, Plan
from kong_ace.core.catalog import Application, Catalog, consumer_refs
from kong_ace.core.credentials import distinct, lookup, presented_keys
from kong_ace.core.decision import Decision, Request
from kong_ace.core.enforcer import Enforcer
from kong_ace.core.matcher import Operation
from kong_ace.core.normalize import normalize_path
from kong_ace.core.readings import body_kind, body_overrides
from kong_ace.core.strategies import KeyStrategy, TokenStrategy
from kong_ace.core.tokens import bearer, claims_shown, unverified_claims
from kong_ace.errors import ConfigError
from kong_ace.limits.limiter import PERIOD_NAMES
from kong_ace.ops import keyauth
from kong_ace.ops.deckfile import DeckFileError, Route
from kong_ace.ops.loader import Loaded, compile_source, hint, read
from kong_ace.ops.output import Output

EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR = 0, 1, 2
REDACTED = "<redacted>"

BAD_HEADER = "header '{raw}' must look like 'Name: value'"
BAD_QUERY = "query argument '{raw}' must look like 'name=value'"
KONG_NO_ROUTE = "no Route matched with those values"
KONG_NO_SERVICE = "no Service found with those values"
NO_ROUTE = "no route matches {method} {path}{host}: Kong answers 404 before any plugin runs"
ROUTE = "route '{route}' of service '{service}' (path {matched}{strip})"
ACE_DISABLED = "the ace plugin is disabled (enabled: false): nothing is enforced"
NO_AUTH_PLUGIN = "no other auth plugin on this route: ACE authenticates the application by key"
GIVEN_CONSUMER = "authenticated by another plugin as consumer '{consumer}' (--consumer)"
KEYAUTH_OK = "key-auth ({place}) authenticated consumer '{consumer}' (key in {names}, redacted)"
KEYAUTH_ANON = "key-auth ({place}) found no valid key: continues as anonymous consumer '{anon}'"
KEYAUTH_DENY = "key-auth ({place}) answers {status} \"{message}\" before ACE runs"
OPERATION = "operation '{id}' of API '{api}': {method} {path}"
NO_OPERATION = "no operation of any API matches {method} {path}"
POLICY_PASS = "match_policy if_present: ACE lets the request through untouched"
POLICY_DENY = "match_policy required: ACE answers it"
APP_BY_CONSUMER = "consumer '{consumer}' is application '{app}'"
CONSUMER_NOT_APP = ("consumer '{consumer}' is not an ACE application and anonymous is set: ACE "
                    "stands aside")
NO_KEY = "no key in header(s) {headers} or query argument(s) {query}"
NO_KEY_ANON = "no key: continues as the anonymous consumer '{anon}'"
TWO_KEYS = "different keys presented (in {where})"
UNKNOWN_KEY = "the key in {where} belongs to no application (looked up by its hash)"
KEY_APP = "the key in {where} ({redacted}) belongs to application '{app}'{name}"
KEY_STATE = "but the credential is {state}"
NO_REGISTRATION = "application '{app}' has no registration covering '{op}'"
REGISTRATION = "{kind} '{target}': {status}"
LIMITS = "{what}: {limits} per application"
NO_LIMITS = "{what}: no rate limit"
FRESH_COUNTERS = ("note: rate limits are counted from zero in this run; the gateway's own "
                  "counters may already be spent")
FORWARDED = "forwarded to service '{service}'"
WOULD_DENY = ("monitor mode: forwarded to service '{service}' as nobody (no identity headers); "
              "enforce would answer {status} \"{message}\"")
STRATEGIES = "the operation accepts: {what}"
OPEN = "open access (auth_strategy none): no application, no application limits"
TOKEN_OK = ("access token from {iss} (strategy '{strategy}'): client id '{cid}' is "
            "application '{app}'")
TOKEN_SCOPE = "access token (strategy '{strategy}') lacks scope(s) {missing}"
TOKEN_REFUSED = "access token refused: {reason}"
NO_TOKEN = "no bearer token (Authorization: Bearer ...)"
KEY_NOT_ACCEPTED = "an API key was presented, but this operation accepts access tokens only"
# Why a request is refused with 400 (SPEC §8, docs/matching.md "Request confusion").
CASE_READING = ("a case-insensitive router (Express, ASP.NET Core) reads {path}: {folded}; "
                "the exact path reaches {exact} (set the API's path_case if you know how its "
                "upstream routes)")
DECODED_READING = ("a percent-decoding upstream reads {path}: {other}; Kong's path reaches "
                   "{exact}")
BODY_READING = ("the POST body's _method names {values}: Laravel would run that method "
                "(body_method_override_action: reject; follow decides on it)")
UNINSPECTED_READING = ("the POST body could not be inspected for _method, and {methods} "
                       "also reach operations at this path (uninspected_body_action: {action})")
READINGS = {
    t.ESCAPED_SLASH: "a decoding upstream reads %2F (or a backslash) as a separator "
                     "(path_with_escaped_slashes_action: reject)",
    t.PATH_PARAMETERS: "Tomcat/Jetty route on the path without its ';' parameters",
    t.FRAGMENT: "a raw '#' starts a fragment for most servers: they route on less of the path",
    t.METHOD_OVERRIDE: "a method override the configuration refuses, or two that disagree",
    t.HOST_MISMATCH: "Kong's router reads the Host header, nginx the request line's host",
    t.TOO_MANY_HEADERS: "more header lines than Kong reads: a key or an override may be unseen",
}


@dataclass
class Step:
    """One stage of the decision and what it found."""

    name: str
    outcome: str
    ok: bool | None = None  # None: informative
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    """The steps and the final answer for one request."""

    request: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    status: int = 200
    message: str | None = None
    answered_by: str = "upstream"
    decision: Decision | None = None

    @property
    def allowed(self) -> bool:
        """Whether the request reaches the upstream service."""
        return self.answered_by == "upstream"

    def stop(self, status: int, message: str, by: str) -> Explanation:
        """Record that something answered the request."""
        self.status, self.message, self.answered_by = status, message, by
        return self


@dataclass
class Probe:
    """The request to explain."""

    method: str
    path: str
    headers: dict[str, list[str]]  # Kong's multi-map form: a name may repeat
    query: dict[str, list[str]]
    host: str | None = None
    consumer: str | None = None
    body: str | None = None
    body_too_large: bool = False


def parse_probe(args: argparse.Namespace) -> Probe:
    """Build the request from the command line; raises ValueError on a malformed -H/--query."""
    headers: dict[str, list[str]] = {}
    for raw in args.header:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            raise ValueError(BAD_HEADER.format(raw=_redact_raw(raw)))
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    query: dict[str, list[str]] = {}
    for raw in args.query:
        name, sep, value = raw.partition("=")
        if not sep or not name:
            raise ValueError(BAD_QUERY.format(raw=_redact_raw(raw)))
        query.setdefault(name, []).append(value)
    host = args.host or (headers["host"][0] if "host" in headers else None)
    return Probe(args.method, args.path, headers, query, host, args.consumer,
                 getattr(args, "data", None), bool(getattr(args, "body_too_large", False)))


def _redact_raw(raw: str) -> str:
    # A malformed argument may still hold a key: show only its beginning.
    return raw[:12] + "..." if len(raw) > 12 else raw


def secret_names(loaded: Loaded) -> tuple[set[str], set[str]]:
    """Header and query names that may carry a key (ACE's and every key-auth plugin's)."""
    cat = loaded.enforcer.catalog
    headers = set(cat.key_header_names) | {"authorization"}  # bearer tokens are never shown
    query = set(cat.key_names)
    for strategy in loaded.enforcer.auth.key_strategies:
        headers |= set(strategy.key_header_names)
        query |= set(strategy.key_names)
    for plugin in loaded.deck.plugins:
        if plugin.name == "key-auth":
            names = keyauth.key_names(plugin)
            headers |= {n.lower() for n in names}
            query |= set(names)
    return headers, query


def redacted_request(loaded: Loaded, probe: Probe) -> dict[str, Any]:
    """The request as it may be shown: key values replaced."""
    h_secret, q_secret = secret_names(loaded)
    return {
        "method": probe.method,
        "path": probe.path,
        "normalized_path": normalize_path(probe.path),
        "host": probe.host,
        "headers": {k: [REDACTED] * len(v) if k in h_secret else v
                    for k, v in probe.headers.items()},
        "query": {k: [REDACTED] * len(v) if k in q_secret else v for k, v in probe.query.items()},
        "consumer": probe.consumer,
    }


def explain(loaded: Loaded, probe: Probe, now: float | None = None) -> Explanation:
    """Walk one request through Kong's router, key-auth and ACE."""
    ex = Explanation(redacted_request(loaded, probe))
    m = loaded.router.find(probe.method, probe.path, probe.host, probe.headers)
    if m is None:
        host = f" (host {probe.host})" if probe.host else ""
        ex.steps.append(Step("route", NO_ROUTE.format(method=probe.method, path=probe.path,
                                                      host=host), False))
        return ex.stop(404, KONG_NO_ROUTE, "kong")
    route = m.route
    ex.steps.append(_route_step(route, m.path, probe.path))
    if route.service is None:
        return ex.stop(503, KONG_NO_SERVICE, "kong")
    if not loaded.plugin.enabled:
        ex.steps.append(Step("ace", ACE_DISABLED, None))
        return ex
    consumer: Any = probe.consumer
    if consumer is not None:
        ex.steps.append(Step("authentication", GIVEN_CONSUMER.format(consumer=consumer), True))
    else:
        consumer = _key_auth(loaded, route, probe, ex)
        if ex.answered_by != "upstream":
            return ex
    service = route.service.as_kong()
    cat = loaded.enforcer.catalog
    op = loaded.enforcer.match(probe.method, probe.path, host=probe.host, service=service)
    if op is None:
        policy = POLICY_DENY if cat.match_required else POLICY_PASS
        ex.steps.append(Step("operation", NO_OPERATION.format(
            method=probe.method, path=normalize_path(probe.path)) + "; " + policy,
            False if cat.match_required else None))
    else:
        ex.steps.append(Step("operation", OPERATION.format(id=op.id, api=op.api, method=op.method,
                                                           path=op.path), True,
                             {"operation_id": op.id, "api": op.api, "template": op.path}))
        app = _by_strategy(loaded.enforcer.auth, op, probe, consumer, ex,
                           now if now is not None else time.time())
        if app is not None:
            _registrations(app, op, ex)
    req = Request(probe.method, probe.path, probe.headers, probe.query, probe.host, service,
                  consumer, body=probe.body, body_spilled=probe.body_too_large)
    decision = loaded.enforcer.decide(req)
    if decision.status == 400 and decision.message:
        ex.steps.append(Step("confusion", confusion_reason(loaded.enforcer, req,
                                                           decision.message), False))
    return _final(ex, decision, route)


def confusion_reason(enforcer: Enforcer, req: Request, message: str) -> str:
    """Why a request is refused as confusing (SPEC §8): the upstream reading that differs."""
    cat = enforcer.catalog
    path = normalize_path(req.path)
    method = req.method
    if message == t.AMBIGUOUS_PATH:
        exact = enforcer.match(method, path, host=req.host, service=req.service,
                               normalized=True)
        case = cat.case
        if case is not None and case.needed(path):
            folded = case.matcher.match(method, path.lower()).operation
            if folded is not exact or (exact is not None and exact.uid in case.conflicts):
                return CASE_READING.format(path=path.lower(), folded=_op_text(folded),
                                           exact=_op_text(exact))
        decoded = t.percent_decode(path)
        other = enforcer.match(method, decoded, host=req.host, service=req.service,
                               normalized=True)
        return DECODED_READING.format(path=decoded, other=_op_text(other), exact=_op_text(exact))
    if message == t.BODY_OVERRIDE:
        kind = body_kind(req.headers.get("content-type"))
        values = body_overrides(kind, req.body or "", req.headers.get("content-type")) \
            if kind else []
        return BODY_READING.format(values=", ".join(sorted(set(values or []))) or "?")
    if message == t.UNINSPECTED_BODY:
        methods = cat.matcher.methods(path) - {method}
        return UNINSPECTED_READING.format(methods=", ".join(sorted(methods)) or "-",
                                          action=cat.policy.uninspected_body)
    return READINGS.get(message, "the request cannot be made safe for every upstream reading")


def _op_text(op: Operation | None) -> str:
    return f"operation '{op.id}'" if op is not None else "no operation"


def _route_step(route: Route, matched: str | None, path: str) -> Step:
    norm = normalize_path(path)
    upstream = norm
    if route.strip_path and matched and not matched.startswith("~"):
        upstream = norm[len(matched):] or "/"
        if not upstream.startswith("/"):
            upstream = "/" + upstream
    strip = f", strip_path: upstream path {upstream}" if route.strip_path and matched else ""
    service = route.service.label if route.service else "-"
    return Step("route", ROUTE.format(route=route.label, service=service,
                                      matched=matched or "(any)", strip=strip), True,
                {"route": route.label, "service": service, "matched_path": matched,
                 "strip_path": route.strip_path, "upstream_path": upstream})


def _key_auth(loaded: Loaded, route: Route, probe: Probe, ex: Explanation) -> Any:
    plugin = keyauth.applicable(loaded.deck, route)
    if plugin is None:
        ex.steps.append(Step("authentication", NO_AUTH_PLUGIN, None))
        return None
    res = keyauth.authenticate(loaded.deck, plugin, probe.headers, probe.query)
    if res.status is not None:
        ex.steps.append(Step("authentication", KEYAUTH_DENY.format(
            place=plugin.place, status=res.status, message=res.message), False))
        ex.stop(res.status, res.message or "", "key-auth")
        return None
    if res.consumer is None:
        ex.steps.append(Step("authentication", KEYAUTH_ANON.format(place=plugin.place,
                                                                   anon=res.anonymous), True))
        return res.anonymous
    c = res.consumer
    label = c.username or c.id or c.custom_id
    ex.steps.append(Step("authentication", KEYAUTH_OK.format(
        place=plugin.place, consumer=label, names="/".join(res.key_names)), True))
    return {k: v for k, v in (("id", c.id), ("username", c.username),
                              ("custom_id", c.custom_id)) if v}


def _by_strategy(auth: Authenticator, op: Operation, probe: Probe, consumer: Any,
                 ex: Explanation, now: float) -> Application | None:
    cat = auth.catalog
    plan = auth.plans.get(op.uid)
    if plan is None:  # the top-level key settings alone
        return _application(cat, probe, consumer, ex, now)
    ex.steps.append(Step("strategy", STRATEGIES.format(what=_strategies_text(auth, plan)), None,
                         {"strategies": list(plan.names)}))
    if plan.open:
        ex.steps.append(Step("application", OPEN, True))
        return None
    if consumer_refs(consumer) and not cat.is_anonymous(consumer):
        return _application(cat, probe, consumer, ex, now)
    token, problem = bearer(probe.headers) if plan.tokens else (None, None)
    if token is not None:
        return _token(auth, plan, token, problem, ex)
    if plan.keys:
        keys = next((k for k in plan.keys if presented_keys(k, probe.headers,  # type: ignore
                                                            probe.query).keys), plan.keys[0])
        app = _application(cat, probe, consumer, ex, now, keys)
        return auth.view(app, (keys.name,)) if app is not None else None
    if any(presented_keys(k, probe.headers, probe.query).keys  # type: ignore[arg-type]
           for k in auth.key_strategies):
        ex.steps.append(Step("application", KEY_NOT_ACCEPTED, False))
    elif cat.anonymous is None:
        ex.steps.append(Step("application", NO_TOKEN, False))
    else:
        ex.steps.append(Step("application", NO_KEY_ANON.format(anon=cat.anonymous), None))
        return cat.consumers.get(cat.anonymous)
    return None


def _strategies_text(auth: Authenticator, plan: Plan) -> str:
    parts = []
    for name in plan.names:
        s = auth.config.strategies.get(name)
        if isinstance(s, TokenStrategy):
            parts.append(f"openid_connect '{name}' (issuer {s.issuer})")
        elif isinstance(s, KeyStrategy):
            parts.append(f"key_auth '{name}' ({', '.join(s.key_names)})")
        else:
            parts.append("none (open)")
    return ", ".join(parts)


def _token(auth: Authenticator, plan: Plan, token: str, problem: str | None,
           ex: Explanation) -> Application | None:
    out = auth.judge(plan, token, problem)
    header, raw = unverified_claims(token) if not out.claims else ({}, dict(out.claims))
    details: dict[str, Any] = {
        "claims": claims_shown(raw, out.strategy), "verified": bool(out.claims),
        "strategy": out.strategy.name if out.strategy else None, "client_id": out.client_id,
        "reason": out.reason}
    if header:  # the token did not verify: its header helps find out why (alg, kid)
        details["header"] = {k: header[k] for k in ("alg", "kid", "typ") if k in header}
    if out.app is not None and out.strategy is not None:
        ex.steps.append(Step("application", TOKEN_OK.format(
            iss=raw.get("iss"), strategy=out.strategy.name, cid=out.client_id, app=out.app.id),
            True, {**details, "application": out.app.id}))
        return auth.view(out.app, (out.strategy.name,))
    if out.missing_scopes and out.strategy is not None:
        text = TOKEN_SCOPE.format(strategy=out.strategy.name, missing=list(out.missing_scopes))
    else:
        text = TOKEN_REFUSED.format(reason=out.reason)
    ex.steps.append(Step("application", text, False, details))
    return None


def _application(cat: Catalog, probe: Probe, consumer: Any, ex: Explanation,
                 now: float, keys: KeyStrategy | None = None) -> Application | None:
    refs = consumer_refs(consumer)
    if refs and not cat.is_anonymous(consumer):
        app = cat.application_for(consumer)
        if app is not None:
            ref = next(r for r in refs if cat.consumers.get(r) is app)
            ex.steps.append(Step("application", APP_BY_CONSUMER.format(consumer=ref,
                                                                       app=app.id), True))
            return app
        if cat.anonymous is not None:
            ex.steps.append(Step("application", CONSUMER_NOT_APP.format(consumer=refs[0]), None))
            return None
    ks: Any = keys if keys is not None else cat  # a key strategy reads like the catalog's keys
    presented = presented_keys(ks, probe.headers, probe.query)
    where = ", ".join([f"header '{h}'" for h in presented.header_names]
                      + [f"query '{q}'" for q in presented.query_names])
    if not presented.keys:
        if cat.anonymous is not None:
            ex.steps.append(Step("application", NO_KEY_ANON.format(anon=cat.anonymous), None))
            return cat.consumers.get(cat.anonymous)
        ex.steps.append(Step("application", NO_KEY.format(
            headers=", ".join(ks.key_header_names) if ks.key_in_header else "-",
            query=", ".join(ks.key_names) if ks.key_in_query else "-"), False))
        return None
    if distinct(presented.keys):
        ex.steps.append(Step("application", TWO_KEYS.format(where=where), False))
        return None
    cred = lookup(cat, presented.keys[0])
    if cred is None:
        ex.steps.append(Step("application", UNKNOWN_KEY.format(where=where), False))
        return None
    app = cred.application
    name = f" ({app.name})" if app.name else ""
    text = KEY_APP.format(where=where, redacted=REDACTED, app=app.id, name=name)
    state = cred.status if cred.status != "active" else (
        "expired" if cred.expires_at is not None and cred.expires_at <= now else None)
    if state is not None:
        ex.steps.append(Step("application", f"{text}, {KEY_STATE.format(state=state)}", False,
                             {"application": app.id}))
        return None
    ex.steps.append(Step("application", text, True, {"application": app.id}))
    return app


def _limits_text(limits: tuple[Any, ...]) -> str:
    return ", ".join(f"{lim.limit} per {PERIOD_NAMES.get(lim.period, lim.period).lower()}"
                     for lim in limits)


def _registrations(app: Application, op: Operation, ex: Explanation) -> None:
    covering = [r for r in app.registrations if op.uid in r.op_uids]
    if not covering:
        ex.steps.append(Step("registration", NO_REGISTRATION.format(app=app.id, op=op.id),
                             False))
        return
    for reg in covering:
        ex.steps.append(Step("registration", REGISTRATION.format(
            kind=reg.kind, target=reg.target, status=reg.status), reg.status == "approved",
            {"kind": reg.kind, "target": reg.target, "status": reg.status}))
    for reg in covering:
        if reg.status != "approved":
            continue
        bucket, limits = reg.quota(op)
        what = (f"operation override in {reg.kind} '{reg.target}'" if "|op:" in bucket
                else f"{reg.kind} '{reg.target}'")
        text = (LIMITS.format(what=what, limits=_limits_text(limits)) if limits
                else NO_LIMITS.format(what=what))
        ex.steps.append(Step("limits", text, None,
                             {"bucket": bucket, "limits": [
                                 {"limit": lim.limit, "period": lim.period} for lim in limits]}))


def _final(ex: Explanation, decision: Decision, route: Route) -> Explanation:
    ex.decision = decision
    would = decision.would_deny
    if would is not None:  # monitor mode: forwarded, recorded as what enforce would answer
        service = route.service.label if route.service else "-"
        ex.steps.append(Step("decision", WOULD_DENY.format(
            service=service, status=would.status, message=would.message), None,
            {**_decision_json(decision), "would_deny": _decision_json(would)}))
        return ex
    if decision.allowed:
        service = route.service.label if route.service else "-"
        ex.steps.append(Step("decision", FORWARDED.format(service=service), True,
                             _decision_json(decision)))
        return ex
    ex.steps.append(Step("decision", f"ACE answers {decision.status} \"{decision.message}\"",
                         False, _decision_json(decision)))
    return ex.stop(decision.status or 500, decision.message or "", "ace")


def _decision_json(d: Decision) -> dict[str, Any]:
    return {"allowed": d.allowed, "status": d.status, "message": d.message,
            "headers": dict(d.headers), "upstream_headers": dict(d.upstream_headers),
            "clear_upstream_headers": list(d.clear_upstream_headers),
            "clear_query": list(d.clear_query), "operation_id": d.operation_id,
            "application_id": d.application_id, "package": d.package, "api": d.api,
            "consumer": d.consumer}


def as_json(ex: Explanation) -> dict[str, Any]:
    """The explanation for machines."""
    return {
        "request": ex.request,
        "steps": [{"step": s.name, "ok": s.ok, "outcome": s.outcome, **s.details}
                  for s in ex.steps],
        "allowed": ex.allowed,
        "status": ex.status,
        "message": ex.message,
        "answered_by": ex.answered_by,
    }


def render(out: Output, ex: Explanation) -> None:
    """The explanation for people."""
    req = ex.request
    c = out.console
    line = f"{req['method']} {req['path']}"
    if req["normalized_path"] != req["path"]:
        line += f"  (normalised: {req['normalized_path']})"
    extras = [f"host: {req['host']}"] if req["host"] else []
    extras += [f"{k}: {v}" for k, vs in req["headers"].items() if k != "host" for v in vs]
    extras += [f"?{k}={v}" for k, vs in req["query"].items() for v in vs]
    if req["consumer"]:
        extras.append(f"consumer: {req['consumer']}")
    c.print(line, style="bold", markup=False)
    for e in extras:
        c.print(f"  {e}", markup=False)
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("")
    table.add_column("result")
    marks = {True: ("ok", "green"), False: ("NO", "bold red"), None: ("--", "dim")}
    for i, s in enumerate(ex.steps, 1):
        mark, style = marks[s.ok]
        table.add_row(str(i), s.name, Text(mark, style=style), Text(s.outcome))
    c.print(table)
    for s in ex.steps:
        if s.details.get("claims") is not None:  # the claims used, never the token
            label = "token claims" if s.details.get("verified") else "token claims (unverified)"
            shown = ", ".join(f"{k}={v}" for k, v in s.details["claims"].items()) or "-"
            c.print(f"{label}: {shown}", markup=False)
    if any(s.name == "limits" for s in ex.steps):
        c.print(FRESH_COUNTERS, style="dim", markup=False)
    if ex.allowed:
        d = ex.decision
        c.print("=> allowed: forwarded upstream", style="bold green")
        if d is not None:
            for k, v in d.upstream_headers.items():
                c.print(f"   upstream {k}: {v}", markup=False)
            for k, v in d.headers.items():
                c.print(f"   response {k}: {v}", markup=False)
    else:
        c.print(f"=> {ex.status} {{\"message\": \"{ex.message}\"}} (answered by "
                f"{ex.answered_by})", style="bold red", markup=False)
        if ex.decision is not None:
            for k, v in ex.decision.headers.items():
                c.print(f"   response {k}: {v}", markup=False)


def run(args: argparse.Namespace) -> int:
    """The explain command."""
    out = Output(args.json)
    try:
        probe = parse_probe(args)
    except ValueError as exc:
        return out.fail(str(exc), EXIT_ERROR)
    try:
        src = read(args.file, args.specs_dir)
    except (DeckFileError, ConfigError) as exc:
        return out.fail(str(exc), EXIT_ERROR, place=exc.place)
    try:
        loaded = compile_source(src)
    except ConfigError as exc:
        advice = hint(src.config, args.specs_dir is not None, exc)
        return out.fail(str(exc), EXIT_ERROR, advice, place=exc.place)
    ex = explain(loaded, probe)
    if args.json:
        out.json(as_json(ex))
    else:
        render(out, ex)
    return EXIT_ALLOWED if ex.allowed else EXIT_DENIED
