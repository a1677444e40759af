"""The Enforcer: one compiled config turning requests into decisions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kong_ace.core import decision as d
from kong_ace.core.auth import Authenticator
from kong_ace.core.casefold import CaseReadings
from kong_ace.core.catalog import Application, Catalog, compile_catalog
from kong_ace.core.credentials import check_keys, presented_keys
from kong_ace.core.decision import Decision, Request, deny
from kong_ace.core.jwks import Fetcher
from kong_ace.core.matcher import Match, Operation
from kong_ace.core.normalize import normalize_path
from kong_ace.core.spec import compile_spec, load_spec_file, parse_document
from kong_ace.core.target import AMBIGUOUS_PATH, UNINSPECTED_BODY, Screened, host_key, screen
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
        self, method: str, path: str, *, host: str | None = None, service: Any = None
    ) -> Operation | None:
        """The operation a request reaches, or None."""
        return self._match(method, path, host, service).operation

    def route(self, req: Request) -> Match:
        """The match ``decide`` would make for ``req`` (hand it back to skip a second one)."""
        return self._route(req, _lower_keys(req.headers))

    def _route(self, req: Request, headers: Mapping[str, Any]) -> Routed:
        cat = self.catalog
        s = screen(cat.policy, req, headers)
        if s.refusal is not None:
            return Routed(None, frozenset(), s)
        m = self._match(s.method, s.path, req.host, req.service, normalized=True)
        case = cat.case
        if case is not None and case.needed(s.path):
            # A case-insensitive router (Express, ASP.NET Core) reads the folded path.
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
        cat = self.catalog
        headers = _lower_keys(req.headers)
        m = routed if isinstance(routed, Routed) else self._route(req, headers)
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
            bucket, limits = reg.quota(op)
            try:
                result = self.limiter.consume(bucket, limits)
            except StorageUnavailable as exc:
                if not self.catalog.fault_tolerant:
                    log.error("rate-limit store unavailable, denying: %s", exc)
                    return deny(500, d.UNEXPECTED, operation_id=op.id, application_id=app.id)
                log.warning("rate-limit store unavailable, admitting: %s", exc)
                result = RateResult(True)
            if result.allowed:
                return self._admit(op, app, reg.kind, reg.target, result, clear, consumer,
                                   hidden_query + strip_query if strip_query else hidden_query,
                                   upstream_path)
            if limited is None or (result.retry_after or 0) < (limited.retry_after or 0):
                limited = result
        if limited is not None:
            headers = {} if self.catalog.hide_client_headers else limited.headers
            return deny(429, d.RATE_LIMITED, headers, operation_id=op.id, application_id=app.id)
        message = d.NOT_REGISTERED if refused is None else d.REGISTRATION_MESSAGES[refused]
        return deny(403, message, operation_id=op.id, application_id=app.id)

    def _admit(
        self,
        op: Operation,
        app: Application,
        kind: str,
        target: str,
        result: RateResult,
        clear: tuple[str, ...],
        consumer: str | None,
        clear_query: tuple[str, ...],
        upstream_path: str | None,
    ) -> Decision:
        if kind == "package":
            upstream = {_H_OP: op.id, _H_APP: app.id, _H_PKG: target}
            package, api = target, op.api
            setting = _SET_PKG
        else:
            upstream = {_H_OP: op.id, _H_APP: app.id, _H_API: target}
            package, api = None, target
            setting = _SET_API
        # A client copy of a header this decision sets is replaced by setting it (nginx matches
        # names case-insensitively): clearing it too could race the set. Other spellings go.
        if clear:
            clear = _unset(clear, setting)
        headers = {} if self.catalog.hide_client_headers else result.headers
        # Positional, in field order: this is built on every admitted request.
        return Decision(True, None, None, headers, upstream, clear, clear_query, op.id, app.id,
                        package, api, consumer, upstream_path)


_H_OP, _H_APP, _H_PKG, _H_API = d.IDENTITY_HEADERS
_SET_OP = frozenset({_H_OP.lower()})
_SET_PKG = frozenset({_H_OP.lower(), _H_APP.lower(), _H_PKG.lower()})
_SET_API = frozenset({_H_OP.lower(), _H_APP.lower(), _H_API.lower()})


class Routed(Match):
    """A match together with the screening that produced it (see target.screen)."""

    __slots__ = ("screened",)

    def __init__(self, operation: Operation | None, allowed: frozenset[str],
                 screened: Screened) -> None:
        super().__init__(operation, allowed)
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
