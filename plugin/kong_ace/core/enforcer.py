"""The Enforcer: one compiled config turning requests into decisions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from hashlib import sha256
from pathlib import Path
from typing import Any

from kong_ace.core import decision as d
from kong_ace.core.auth import Authenticator
from kong_ace.core.casefold import CaseReadings
from kong_ace.core.catalog import MONITOR, Application, Catalog, compile_catalog
from kong_ace.core.credentials import check_keys, presented_keys
from kong_ace.core.decision import Decision, Request, deny
from kong_ace.core.jwks import Fetcher
from kong_ace.core.matcher import Match, Operation
from kong_ace.core.normalize import normalize_path
from kong_ace.core.reasons import reason
from kong_ace.core.spec import compile_spec, load_spec_file, parse_document
from kong_ace.core.target import (
    AMBIGUOUS_PATH,
    UNINSPECTED_BODY,
    Screened,
    host_key,
    plain_path,
    screen,
)
from kong_ace.limits.limiter import RateResult, StorageUnavailable, build_limiter

log = logging.getLogger("kong_ace")

UNREACHABLE_PARAMETERS = ("operation '{op}' has ';' in its path: requests with ';' under an API "
                          "are refused (SPEC §8), so it is unreachable")


class Enforcer:
    """Compiles a plugin config once; ``decide`` is dict hops and arithmetic per request."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.time,
        storage: Any = None,
        base_dir: str | Path | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.catalog: Catalog = compile_catalog(config, Path(base_dir) if base_dir else None)
        self._clock = clock
        # Auth strategies (SPEC §11); ``fetcher`` GETs JWKS and discovery documents.
        self.auth = Authenticator(config, self.catalog, clock=clock, fetch=fetcher)
        self._auth_plans = self.auth.plans  # only operations not on the default key strategy
        self.limiter = build_limiter(self.catalog.rate_limiting, clock=clock, storage=storage)
        self._warnings: list[str] | None = None
        cat = self.catalog
        # Compiled once: operations refused after their sunset, and whether any decision needs
        # a second look (monitor mode, lifecycle headers). Unused, they cost one attribute test.
        self._gone = {uid: lc for uid, lc in cat.lifecycles.items() if lc.refuse}
        self._reviewed = cat.monitoring or bool(cat.lifecycles)
        self._keys_by_app: dict[str, list[Any]] | None = None  # decide_as only
        # The quick path (see _quick) serves configs where a plain request needs no second
        # look and carries its key in one header; anything else takes the full path.
        names = cat.key_header_names
        self._quick_key: str | None = (
            names[0] if len(names) == 1 and cat.key_in_header and not self._reviewed
            and not self._gone else None)
        self._scoped = cat.service_scoped or cat.host_scoped
        # Routes the quick path took or declined (see _quick), as Kong's router caches its
        # matches: kong/router/traditional.lua keys an LRU of DEFAULT_MATCH_LRUCACHE_SIZE
        # (5000, kong/router/utils.lua) by method, URI and host.
        self._routes: dict[tuple[Any, ...], Operation | None] = {}

    @property
    def warnings(self) -> list[str]:
        """Spec validation findings; computed on first use, since full validation is slow."""
        if self._warnings is None:
            found: list[str] = []
            for source, path, text in self.catalog.sources:
                if path is not None:
                    found += load_spec_file(path, source, validate=True).warnings
                elif text is not None:
                    found += compile_spec(parse_document(text, source), source, None).warnings
            found += [UNREACHABLE_PARAMETERS.format(op=op) for op in self.catalog.operations()
                      if ";" in op.path]
            self._warnings = found
        return self._warnings

    def match(
        self, method: str, path: str, *, host: str | None = None, service: Any = None,
        normalized: bool = False,
    ) -> Operation | None:
        """The operation a request reaches, or None (``normalized``: ``path`` is Kong's)."""
        return self._match(method, path, host, service, normalized).operation

    def route(self, req: Request) -> Match:
        """The match ``decide`` would make for ``req`` (hand it back to skip a second one)."""
        return self._route(req, _lower_keys(req.headers))

    def _route(self, req: Request, headers: Mapping[str, Any], plain: Screened | None = None,
               exact: Match | None = None) -> Routed:
        # ``plain``, ``exact``: the screen's answer for a plain request and its match, when the
        # quick path has them (a long path is not matched twice).
        cat = self.catalog
        if plain is None:
            s = screen(cat.policy, req, headers)
            if s.refusal is not None:
                return Routed(None, frozenset(), s)
        else:
            s = plain
        if exact is not None:
            m = exact
        elif cat.service_scoped or cat.host_scoped:
            m = self._match(s.method, s.path, req.host, req.service, normalized=True)
        else:  # no API is scoped: what _match does, one call and two tests fewer
            m = cat.matcher.match(s.method, s.path, (), None)
        case = cat.case
        # A case-insensitive router (Express, ASP.NET Core) reads the folded path: only where
        # it may differ.
        if case is not None and case.needed(s.path):
            m = self._folded(case, s.method, s.path, req, m)  # type: ignore[assignment]
            if m is None:
                s.refusal = AMBIGUOUS_PATH
                return Routed(None, frozenset(), s)
        if s.alternate is not None:
            # A percent-decoding upstream reads the alternate: it must reach the same operation.
            # (Not normalised again: a decoded '%25' must not be decoded twice.)
            alt: Match | None = self._match(s.method, s.alternate, req.host, req.service,
                                            normalized=True)
            if case is not None and case.needed(s.alternate):
                alt = self._folded(case, s.method, s.alternate, req, alt)  # type: ignore
            if alt is None or alt.operation is not m.operation:
                s.refusal = AMBIGUOUS_PATH
                return Routed(None, frozenset(), s)
        if s.body_unseen:
            action = cat.policy.uninspected_body
            if action == "reject" or (action == "reject_if_ambiguous" and self._other_methods(
                    s.path, req, s.method)):
                # A body too large to read may hold `_method` naming another operation.
                s.refusal = UNINSPECTED_BODY
                return Routed(None, frozenset(), s)
        return Routed(m.operation, m.allowed, s)

    def _folded(self, case: CaseReadings, method: str, path: str, req: Request,
                exact: Match) -> Match | None:
        cat = self.catalog
        folded = case.matcher.match(
            method, path.lower(), _service_keys(req.service) if cat.service_scoped else (),
            _host(req.host) if cat.host_scoped else None)
        return case.resolve(exact, folded)

    def _other_methods(self, path: str, req: Request, method: str) -> bool:
        # Whether an override could reach another operation: another method at this path
        # (also when the POST itself reaches none: under if_present it would pass through).
        cat = self.catalog
        methods = cat.matcher.methods(
            path, _service_keys(req.service) if cat.service_scoped else (),
            _host(req.host) if cat.host_scoped else None)
        return bool(methods - {method})

    def _match(self, method: str, path: str, host: Any, service: Any,
               normalized: bool = False) -> Match:
        cat = self.catalog
        # Scoping arguments only cost anything when some API is scoped.
        return cat.matcher.match(
            method,
            path if normalized else normalize_path(path),
            _service_keys(service) if cat.service_scoped else (),
            _host(host) if cat.host_scoped else None,
        )

    def decide(self, req: Request, routed: Match | None = None) -> Decision:
        """Match, authenticate, authorize and count one request.

        ``routed``: ``self.route(req)`` when the caller already has it, else None.
        """
        if routed is None and self._quick_key is not None:
            quick = self._quick(req, self._quick_key)
            if type(quick) is Decision:
                return quick
            routed = quick  # how far the quick path got, for the full path to go on from
        headers = _lower_keys(req.headers)
        m = routed if isinstance(routed, Routed) else self._route(req, headers)
        if self._reviewed:
            return self._review(self._decide(req, headers, m), req, headers, m)
        return self._decide(req, headers, m)

    def _quick(self, req: Request, key_name: str) -> Decision | Routed | None:
        """``decide`` for the usual request in fewer steps; else the full path's route when
        the quick path got that far (what ``_route`` returns), else None.

        The usual request: plain_path recognises it (screen would find nothing to do), it
        reaches an operation, the folded reading cannot differ, no other plugin authenticated
        it, its operation takes the key strategy and it presents one key in the key header (no
        key query argument). Every step is the full path's for that shape;
        tests/core/test_fast_path.py compares the two. The route's answer is cached (bounded):
        it depends on the method, the path and the scope keys only.
        """
        headers = req.headers
        path = plain_path(req, headers)
        if path is None or req.consumer is not None:
            return None
        cat = self.catalog
        method = req.method
        if self._scoped:
            service = _service_keys(req.service) if cat.service_scoped else ()
            host = _host(req.host) if cat.host_scoped else None
            route: tuple[Any, ...] = (method, path, service, host)
        else:
            service, host = (), None
            route = (method, path)
        # What the matcher, the fold check and the strategy say depends on the route alone.
        routes = self._routes
        op = routes.get(route, _UNSEEN)
        if op is _UNSEEN:
            m = cat.matcher.match(method, path, service, host)
            op = m.operation
            case = cat.case
            if op is not None and (op.uid in self._auth_plans or (
                    case is not None and case.needed(path)
                    and self._folded(case, method, path, req, m) is not m)):
                op = None  # another strategy, or the folded reading does not simply agree
            if len(path) <= ROUTE_PATH_MAX:
                if len(routes) >= ROUTES_MAX:
                    routes.clear()  # bounded: a stream of new paths only refills it
                routes[route] = op
            if op is None:  # the full path decides, on this screen and this match
                return self._route(req, headers, Screened(None, method, path), m)
        if op is None:
            return None
        if cat.key_in_query and req.query and any(n in req.query for n in cat.key_names):
            return self._plain(op, method, path)
        value = headers.get(key_name)
        if type(value) is list:
            if len(value) != 1:
                return self._plain(op, method, path)
            value = value[0]
        if type(value) is not str or not value:  # noqa: E721 - no key, or an odd one
            return self._plain(op, method, path)
        # check_keys, inlined for the key that passes (hash_key's digest of a str key).
        cred = cat.credentials.get(sha256(value.encode("utf-8", "surrogateescape")).hexdigest())
        if cred is None or cred.status != "active" or cred.expires_at is not None:
            now = self._clock()  # (read only for a key that can expire)
            if cred is None or cred.status != "active" or cred.expires_at <= now:  # type: ignore
                return check_keys(cat, (value,), now, op.id)  # the 401 that refuses it
        app = cred.application
        return self._authorize(op, app, cat.key_header_names if cat.hide_credentials else (),
                               app.consumer, (), (), None)

    @staticmethod
    def _plain(op: Operation, method: str, path: str) -> Routed:
        # What _route returns for a plain request whose route the quick path took: the
        # screen's plain answer, the operation, no other method (it matched), one reading.
        return Routed(op, frozenset(), Screened(None, method, path))

    def _decide(self, req: Request, headers: Mapping[str, Any], m: Routed) -> Decision:
        cat = self.catalog
        s = m.screened
        if s.refusal is not None:
            return deny(400, s.refusal)
        # ACE owns every spelling of its identity headers, on every request; a stripped method
        # override travels with them.
        forged = s.ace_headers + s.strip_headers if s.strip_headers else s.ace_headers
        strip_query = s.strip_query
        op = m.operation
        if op is None:
            # An odd-case method ('get') never passes where its standard form is defined.
            if m.allowed and (cat.match_required or s.method.upper() in m.allowed):
                allow = ", ".join(sorted(m.allowed))
                return deny(405, d.METHOD_NOT_ALLOWED, {"Allow": allow})
            if cat.match_required:
                return deny(404, d.NO_OPERATION)
            if forged or strip_query:
                return Decision(allowed=True, clear_upstream_headers=forged,
                                clear_query=strip_query)
            return d.PASS
        upstream_path = s.upstream_path
        if self._gone:
            gone = self._sunset(op)
            if gone is not None:
                return gone

        consumer = req.consumer
        if consumer is not None and (req.credential is False or s.anonymous):
            # Another plugin's anonymous consumer (no credential) is no authenticated caller.
            consumer = None

        plan = self._auth_plans.get(op.uid)
        if plan is not None:  # another strategy than the top-level keys may admit it
            got = self.auth.authenticate(op, plan, req, headers, forged, consumer,
                                         s.consumer_headers)
            if type(got) is Decision:
                if got.allowed and (strip_query or upstream_path is not None):
                    got = replace(got, clear_query=got.clear_query + strip_query,
                                  upstream_path=upstream_path)
                return got
            clear = forged + s.consumer_headers if got.own else forged  # type: ignore[union-attr]
            return self._authorize(op, got.app, clear + got.hidden_headers,  # type: ignore
                                   got.consumer, got.hidden_query,  # type: ignore[union-attr]
                                   strip_query, upstream_path)
        if consumer is not None and not cat.is_anonymous(consumer):
            app = cat.application_for(consumer)
            if app is not None:
                return self._authorize(op, app, forged, None, (), strip_query, upstream_path)
            if cat.anonymous is not None:
                # Authenticated by another plugin and not an ACE application: ACE stands aside.
                return Decision(allowed=True, clear_upstream_headers=forged,
                                clear_query=strip_query, operation_id=op.id,
                                upstream_path=upstream_path)

        # From here ACE authenticates the caller itself: Kong's consumer headers are its own.
        if s.consumer_headers:
            forged += s.consumer_headers
        presented = presented_keys(cat, headers, req.query)
        keys = presented.keys
        if not keys:
            if cat.anonymous is not None:
                app = cat.consumers.get(cat.anonymous)
                if app is not None:
                    return self._authorize(op, app, forged, cat.anonymous, (), strip_query,
                                           upstream_path)
                return Decision(
                    allowed=True, clear_upstream_headers=_unset(forged, _SET_OP),
                    clear_query=strip_query, operation_id=op.id, consumer=cat.anonymous,
                    upstream_headers={d.HEADER_OPERATION: op.id}, upstream_path=upstream_path,
                )
            return deny(401, d.NO_API_KEY, d.KEY_CHALLENGE, operation_id=op.id)
        cred = check_keys(cat, keys, self._clock(), op.id)
        if type(cred) is Decision:
            return cred
        app = cred.application  # type: ignore[union-attr]
        if cat.hide_credentials:
            return self._authorize(op, app, forged + presented.header_names, app.consumer,
                                   presented.query_names, strip_query, upstream_path)
        return self._authorize(op, app, forged, app.consumer, (), strip_query, upstream_path)

    def _authorize(
        self,
        op: Operation,
        app: Application,
        clear: tuple[str, ...],
        consumer: str | None,
        hidden_query: tuple[str, ...],
        strip_query: tuple[str, ...],
        upstream_path: str | None,
    ) -> Decision:
        uid = op.uid
        refused: str | None = None
        limited: RateResult | None = None
        for reg in app.registrations:
            if uid not in reg.op_uids:
                continue
            if reg.status != "approved":
                refused = refused or reg.status
                continue
            # reg.quota(op) without the call when no operation of it has its own limits.
            bucket, limits = reg.quota(op) if reg.overrides else (reg.bucket, reg.limits)
            try:
                result = self.limiter.consume(bucket, limits)
            except StorageUnavailable as exc:
                if not self.catalog.fault_tolerant:
                    log.error("rate-limit store unavailable, denying: %s", exc)
                    return deny(500, d.UNEXPECTED, operation_id=op.id, application_id=app.id)
                log.warning("rate-limit store unavailable, admitting: %s", exc)
                result = RateResult(True)
            if result.allowed:
                # Admitted (what _admit did, inlined: this runs on every admitted request).
                # A client copy of a header this decision sets is replaced by setting it (nginx
                # matches names case-insensitively): clearing it too could race the set. Other
                # spellings go.
                headers = {} if self.catalog.hide_client_headers else result.headers
                if strip_query:
                    hidden_query += strip_query
                if reg.kind == "package":
                    target = reg.target
                    # Positional, in field order: this is built on every admitted request.
                    return Decision(True, None, None, headers,
                                    {_H_OP: op.id, _H_APP: app.id, _H_PKG: target},
                                    _unset(clear, _SET_PKG) if clear else clear, hidden_query,
                                    op.id, app.id, target, op.api, consumer, upstream_path)
                return Decision(True, None, None, headers,
                                {_H_OP: op.id, _H_APP: app.id, _H_API: reg.target},
                                _unset(clear, _SET_API) if clear else clear, hidden_query,
                                op.id, app.id, None, reg.target, consumer, upstream_path)
            if limited is None or (result.retry_after or 0) < (limited.retry_after or 0):
                limited = result
        if limited is not None:
            headers = {} if self.catalog.hide_client_headers else limited.headers
            return deny(429, d.RATE_LIMITED, headers, operation_id=op.id, application_id=app.id)
        message = d.NOT_REGISTERED if refused is None else d.REGISTRATION_MESSAGES[refused]
        return deny(403, message, operation_id=op.id, application_id=app.id)

    def _sunset(self, op: Operation) -> Decision | None:
        lc = self._gone.get(op.uid)
        if lc is not None and lc.gone(self._clock()):
            return deny(410, d.SUNSET, operation_id=op.id)
        return None

    # --- replay (kong-ace replay: logs name the application, never its key) -------------------

    def decide_as(self, req: Request, application: str | None) -> Decision:
        """Decide ``req`` as if ``application`` had authenticated; None: no application.

        Keys in the request never count (logs must not be needed to hold them): the key headers
        and query arguments are dropped. The application counts as authenticated while it has
        a usable key, a consumer mapping, or the operation takes tokens (a token in a log cannot
        be checked again); it is refused as its key would be otherwise.
        """
        cat = self.catalog
        names = cat.key_header_names
        headers = _lower_keys(req.headers)
        query = req.query
        keyed_query = bool(query) and any(n in query for n in cat.key_names)
        if keyed_query or any(n in headers for n in names):
            if keyed_query:
                query = {k: v for k, v in query.items() if k not in cat.key_names}
            headers = {k: v for k, v in headers.items() if k not in names}
            req = Request(req.method, req.path, headers, query, req.host, req.service,
                          req.consumer, req.target, req.authority, req.credential,
                          req.headers_truncated)
        m = self._route(req, headers)
        op = m.operation
        plan = None if op is None else self._auth_plans.get(op.uid)
        if application is None or op is None or m.screened.refusal is not None or (
                plan is not None and plan.open):
            return self.decide(req, m)
        dec = self._sunset(op) if self._gone else None
        if dec is None:
            dec = self._decide_as(op, cat.applications.get(application), plan is None, m)
        return self._review(dec, req, headers, m) if self._reviewed else dec

    def _decide_as(self, op: Operation, app: Application | None, by_key: bool,
                   m: Routed) -> Decision:
        if app is None:  # gone from the config: its key is an unknown key now
            return deny(401, d.UNAUTHORIZED, d.KEY_CHALLENGE, operation_id=op.id)
        if by_key and app.consumer is None:
            if self._keys_by_app is None:  # built on the first replayed request
                self._keys_by_app = {}
                for c in self.catalog.credentials.values():
                    self._keys_by_app.setdefault(c.application.id, []).append(c)
            creds = self._keys_by_app.get(app.id, [])
            now = self._clock()
            if not any(c.status == "active" and (c.expires_at is None or c.expires_at > now)
                       for c in creds):
                message = (d.UNAUTHORIZED if not creds else d.KEY_REVOKED
                           if all(c.status != "active" for c in creds) else d.KEY_EXPIRED)
                return deny(401, message, d.KEY_CHALLENGE, operation_id=op.id)
        s = m.screened
        return self._authorize(op, app, s.ace_headers, app.consumer, (), s.strip_query,
                               s.upstream_path)

    # --- monitor mode and lifecycle headers (docs/operations.md, docs/concepts.md) -------------

    def _review(self, dec: Decision, req: Request, headers: Mapping[str, Any],
                m: Routed) -> Decision:
        """A monitored denial becomes a would-deny admission; lifecycle headers are added."""
        op = m.operation
        if not dec.allowed and self.catalog.monitoring and self.monitored(dec, m):
            dec = self._would_deny(dec, req, headers, m)
        if op is not None:
            lc = self.catalog.lifecycles.get(op.uid)
            if lc is not None:
                dec = replace(dec, headers={**dec.headers, **lc.headers} if dec.headers
                              else lc.headers)
        return dec

    def monitored(self, dec: Decision, m: Match) -> bool:
        """Whether the denial ``dec`` of the request routed to ``m`` is only monitored.

        The most specific setting wins: a denial by a registration (rate limit, a registration
        not approved, the store) follows the setting of every registration that refused it
        (each: its package, else the operation's API, else the top level; enforce if any says
        enforce); any other denial of an operation follows the operation's own setting
        (packages that set one, else its API, else the top level); a request matching no
        operation the top level. Request-confusion refusals (400) only with
        ``monitor_request_confusion``.
        """
        cat = self.catalog
        if dec.status == 400 and not cat.monitor_confusion:
            return False
        op = m.operation
        if op is None:
            return cat.enforcement == MONITOR
        uid = op.uid
        if dec.application_id is not None and dec.status in _REGISTRATION_STATUSES:
            app = cat.applications.get(dec.application_id)
            regs = [r for r in app.registrations if uid in r.op_uids] if app else []
            if regs:
                return all(uid in r.monitored for r in regs)
        return uid in cat.monitored_ops

    def _would_deny(self, dec: Decision, req: Request, headers: Mapping[str, Any],
                    m: Routed) -> Decision:
        # Let through as nobody: no identity headers, no authenticated consumer; what the
        # screen strips stays stripped, and hide_credentials still hides the key.
        cat = self.catalog
        s = m.screened
        clear = d.IDENTITY_HEADERS + s.ace_headers + s.strip_headers
        c = req.consumer
        if c is None or req.credential is False or s.anonymous or cat.is_anonymous(c):
            clear += s.consumer_headers  # not another plugin's caller: ACE's own to clear
        query = s.strip_query
        if cat.hide_credentials:
            presented = presented_keys(cat, headers, req.query)
            clear += presented.header_names
            query += presented.query_names
        upstream = {d.HEADER_WOULD_DENY: f"{dec.status} {reason(dec)}"} if cat.monitor_header \
            else {}
        return Decision(True, None, None, {}, upstream, clear, query, dec.operation_id,
                        dec.application_id, None, None, None, s.upstream_path, dec)


# The quick path's route cache: entries, and the longest path it keeps (memory stays bounded:
# at most ROUTES_MAX * ROUTE_PATH_MAX characters of paths).
ROUTES_MAX = 5000
ROUTE_PATH_MAX = 512
_UNSEEN: Any = object()

# Denials a registration answers for: its quota, its status, the store behind its quota.
_REGISTRATION_STATUSES = frozenset({403, 429, 500})
_H_OP, _H_APP, _H_PKG, _H_API = d.IDENTITY_HEADERS
_SET_OP = frozenset({_H_OP.lower()})
_SET_PKG = frozenset({_H_OP.lower(), _H_APP.lower(), _H_PKG.lower()})
_SET_API = frozenset({_H_OP.lower(), _H_APP.lower(), _H_API.lower()})


class Routed(Match):
    """A match together with the screening that produced it (see target.screen)."""

    __slots__ = ("screened",)

    def __init__(self, operation: Operation | None, allowed: frozenset[str],
                 screened: Screened) -> None:
        # Assigned directly: built per request, and super().__init__ costs two calls more.
        self.operation = operation
        self.allowed = allowed
        self.screened = screened


def _unset(names: tuple[str, ...], setting: frozenset[str]) -> tuple[str, ...]:
    # Names the decision sets anyway (any case) are not cleared as well.
    return tuple(n for n in names if n.lower() not in setting)


def _lower_keys(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    # Kong hands header names in lower case already; only other callers pay for the copy.
    try:
        if all(map(str.islower, headers)):
            return headers
    except TypeError:  # a name that is not a str: the general loop below
        pass
    for name in headers:
        if not name.islower() and name.lower() != name:
            # Merge names that differ only in case (as Kong does), so none of their values
            # (a second, different key) is lost.
            out: dict[str, Any] = {}
            for k, v in headers.items():
                k = k.lower()
                if k in out:
                    prev, more = out[k], v
                    out[k] = [*(prev if isinstance(prev, list) else [prev]),
                              *(more if isinstance(more, list) else [more])]
                else:
                    out[k] = v
            return out
    return headers


def _service_keys(service: Any) -> tuple[str, ...]:
    if service is None:
        return ()
    if isinstance(service, str):
        return (service,)
    if isinstance(service, Mapping):
        return tuple(v for v in (service.get("id"), service.get("name")) if isinstance(v, str))
    return ()


def _host(host: Any) -> str | None:
    if isinstance(host, list):  # a multi-map value: the first Host header
        host = host[0] if host else None
    if not isinstance(host, str) or not host:
        return None
    # Port and a trailing dot dropped: a scope must not be missed by spelling the host oddly.
    return host_key(host)
