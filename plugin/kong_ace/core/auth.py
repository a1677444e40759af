"""Authentication by strategy (SPEC §11): which credential an operation accepts, and whose it is.

The Enforcer hands an operation here only when some strategy other than the top-level keys can
admit it; everything else keeps the Enforcer's own key path. The outcome is either a ``Decision``
(a denial, or an open operation) or an ``Admission`` for the Enforcer's registration check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kong_ace.core import decision as d
from kong_ace.core.catalog import Application, Catalog
from kong_ace.core.credentials import check_keys, presented_keys
from kong_ace.core.decision import Decision, Request, deny
from kong_ace.core.jwks import REFRESHER, Fetcher, KeySet, http_fetch
from kong_ace.core.logsafe import escape
from kong_ace.core.matcher import Operation
from kong_ace.core.strategies import (
    NONE,
    AuthConfig,
    KeyStrategy,
    TokenStrategy,
    compile_auth,
)
from kong_ace.core.tokens import UNKNOWN_CLIENT, TokenVerifier, bearer, check

log = logging.getLogger("kong_ace")

_H_OP = d.HEADER_OPERATION


class Admission(NamedTuple):
    """An authenticated application, for the Enforcer's registration and limit checks."""

    app: Application
    consumer: str | None
    hidden_headers: tuple[str, ...]
    hidden_query: tuple[str, ...]
    own: bool = True  # ACE authenticated the caller itself (not another plugin's consumer)


@dataclass(frozen=True, slots=True)
class Plan:
    """The strategies that can admit one operation (shared by operations with the same set)."""

    names: tuple[str, ...]
    open: bool
    keys: tuple[KeyStrategy, ...]
    tokens: tuple[TokenStrategy, ...]
    missing: Decision  # the answer when no credential at all came


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """What a bearer token came to under one operation's strategies (for explain and logs)."""

    strategy: TokenStrategy | None
    client_id: str | None
    app: Application | None
    reason: str | None
    missing_scopes: tuple[str, ...]
    claims: Mapping[str, Any]


class Authenticator:
    """Compiled strategies of one config: plans per operation, key sets, the token cache."""

    def __init__(self, config: Mapping[str, Any], catalog: Catalog, *,
                 clock: Callable[[], float] = time.time, fetch: Fetcher | None = None) -> None:
        self.catalog = catalog
        self.config: AuthConfig = compile_auth(config, catalog)
        self._clock = clock
        strategies = self.config.strategies
        self.key_strategies = tuple(s for s in strategies.values() if isinstance(s, KeyStrategy))
        self._hiding = tuple(s for s in self.key_strategies if s.hide_credentials)
        tokens = [s for s in strategies.values() if isinstance(s, TokenStrategy)]
        self.key_sets: dict[str, KeySet] = {}
        algorithms: dict[str, frozenset[str]] = {}
        for s in tokens:
            if s.issuer not in self.key_sets:
                same = [t for t in tokens if t.issuer == s.issuer]
                uri = next((t.jwks_uri for t in same if t.jwks_uri), None)
                inline = next((t.jwks for t in same if t.jwks is not None), None)
                self.key_sets[s.issuer] = KeySet(
                    s.issuer, jwks_uri=uri, inline=inline if uri is None else None,
                    fetch=fetch or http_fetch, clock=clock)
            algorithms[s.issuer] = algorithms.get(s.issuer, frozenset()) | s.algorithms
        for keys in self.key_sets.values():
            keys.load()  # compile time: an unreachable IdP is logged, and retried later
            REFRESHER.watch(keys)
        self.verifier = TokenVerifier(self.key_sets, algorithms, clock)
        self.plans = self._plans()
        self._views: dict[tuple[str, tuple[str, ...]], Application] = {}
        self._admissions: dict[tuple[str, str], Admission] = {}

    def _plans(self) -> dict[int, Plan]:
        built: dict[tuple[str, ...], Plan] = {}
        out: dict[int, Plan] = {}
        strategies = self.config.strategies
        for uid, names in self.config.op_strategies.items():
            plan = built.get(names)
            if plan is None:
                keys = tuple(s for n in names if isinstance(s := strategies.get(n), KeyStrategy))
                tokens = tuple(s for n in names
                               if isinstance(s := strategies.get(n), TokenStrategy))
                plan = built[names] = Plan(names, NONE in names, keys, tokens,
                                           _missing(keys, tokens))
            out[uid] = plan
        return out

    def authenticate(self, op: Operation, plan: Plan, req: Request, headers: Mapping[str, Any],
                     forged: tuple[str, ...], consumer: Any,
                     own_clear: tuple[str, ...] = ()) -> Decision | Admission:
        """Find the application of a request to ``op`` under ``plan``, or answer it.

        ``consumer``: the consumer another plugin authenticated, if ACE trusts it (SPEC §8);
        ``own_clear``: what to clear as well when ACE authenticates the caller itself.
        """
        if plan.open:
            # Open access: matched, no application, no application limits.
            return Decision(True, None, None, {}, {_H_OP: op.id}, forged, (), op.id)
        cat = self.catalog
        if consumer is not None and not cat.is_anonymous(consumer):
            app = cat.application_for(consumer)
            if app is not None:
                # Another Kong auth plugin authenticated it: as on the key path (docs/decisions.md).
                return Admission(app, None, (), (), False)
            if cat.anonymous is not None:
                return Decision(allowed=True, clear_upstream_headers=forged, operation_id=op.id)
        if plan.tokens:
            token, problem = bearer(headers)
            if token is not None:
                got = self._by_token(op, plan, token, problem)
                if self._hiding and type(got) is Admission:
                    # A key sent beside the token is still a secret: hide_credentials holds.
                    return self._hide_keys(got, headers, req.query)  # type: ignore[arg-type]
                return got
        if plan.keys:
            got = self._by_key(op, plan, headers, req.query)
            if got is not None:
                return got
            if cat.anonymous is not None and (self._any_key(headers, req.query)
                                              or bearer(headers)[0] is not None):
                # A credential of another strategy is answered as no credential of this one,
                # never admitted as the anonymous consumer (SPEC §11).
                m = plan.missing
                return Decision(False, m.status, m.message, m.headers, operation_id=op.id)
        elif self._any_key(headers, req.query):
            return deny(401, d.TOKEN_REQUIRED, d.BEARER_CHALLENGE, operation_id=op.id)
        if cat.anonymous is not None:
            app = cat.consumers.get(cat.anonymous)
            if app is not None:
                return Admission(app, cat.anonymous, (), ())
            return Decision(allowed=True, clear_upstream_headers=forged + own_clear,
                            operation_id=op.id, consumer=cat.anonymous,
                            upstream_headers={_H_OP: op.id})
        m = plan.missing
        return Decision(False, m.status, m.message, m.headers, operation_id=op.id)

    # --- keys ---------------------------------------------------------------------------------

    def _by_key(self, op: Operation, plan: Plan, headers: Mapping[str, Any],
                query: Mapping[str, Any]) -> Decision | Admission | None:
        keys: tuple[Any, ...] = ()
        names: list[str] = []
        hidden_h: tuple[str, ...] = ()
        hidden_q: tuple[str, ...] = ()
        for s in plan.keys:
            found = presented_keys(s, headers, query)  # type: ignore[arg-type]
            if found.keys:
                keys += found.keys
                names.append(s.name)
                if s.hide_credentials:
                    hidden_h += found.header_names
                    hidden_q += found.query_names
        if not keys:
            return None
        cred = check_keys(self.catalog, keys, self._clock(), op.id)
        if type(cred) is Decision:
            return cred
        app = cred.application  # type: ignore[union-attr]
        return Admission(self.view(app, tuple(names)), app.consumer, hidden_h, hidden_q)

    def _hide_keys(self, got: Admission, headers: Mapping[str, Any],
                   query: Mapping[str, Any]) -> Admission:
        hidden_h, hidden_q = got.hidden_headers, got.hidden_query
        for s in self._hiding:
            found = presented_keys(s, headers, query)  # type: ignore[arg-type]
            hidden_h += found.header_names
            hidden_q += found.query_names
        return got._replace(hidden_headers=hidden_h, hidden_query=hidden_q)

    def _any_key(self, headers: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
        return any(presented_keys(s, headers, query).keys  # type: ignore[arg-type]
                   for s in self.key_strategies)

    # --- tokens -------------------------------------------------------------------------------

    def _by_token(self, op: Operation, plan: Plan, token: str,
                  problem: str | None) -> Decision | Admission:
        if problem is None and len(plan.tokens) == 1:
            # The usual case, kept to dict hops: one strategy, a verified (cached) token.
            verified, _ = self.verifier.verify(token)
            if verified is not None:
                s = plan.tokens[0]
                cid, reason, missing = check(verified, s, self._clock())
                if reason is None and not missing:
                    app = self.config.client_ids.get(cid)  # type: ignore[arg-type]
                    if app is not None:
                        # The admission of an app under one strategy never changes: build once.
                        got = self._admissions.get((app.id, s.name))
                        return got if got is not None else self._admission(app, s.name)
        out = self.judge(plan, token, problem)
        if out.app is not None:
            view = self.view(out.app, (out.strategy.name,))  # type: ignore[union-attr]
            return Admission(view, out.app.consumer, (), ())
        if out.missing_scopes:
            challenge = {"WWW-Authenticate": 'Bearer realm="kong", error="insufficient_scope", '
                                             f'scope="{" ".join(out.strategy.scopes)}"'}  # type: ignore[union-attr]
            return deny(403, d.INSUFFICIENT_SCOPE, challenge, operation_id=op.id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("ace: bearer token refused for %s: %s", op.id, escape(out.reason or ""))
        return deny(401, d.INVALID_TOKEN, d.INVALID_TOKEN_CHALLENGE, operation_id=op.id)

    def judge(self, plan: Plan, token: str, problem: str | None = None) -> TokenOutcome:
        """Verify ``token`` and check it under each token strategy of ``plan``, in order."""
        if problem is not None:
            return TokenOutcome(None, None, None, problem, (), {})
        verified, reason = self.verifier.verify(token)
        if verified is None:
            return TokenOutcome(None, None, None, reason, (), {})
        now = self._clock()
        first: TokenOutcome | None = None
        for s in plan.tokens:
            cid, reason, missing = check(verified, s, now)
            app = self.config.client_ids.get(cid) if cid is not None else None
            if reason is None and app is None:
                reason = UNKNOWN_CLIENT.format(cid=cid)
            if reason is None and not missing:
                return TokenOutcome(s, cid, app, None, (), verified.claims)
            # Prefer reporting a scope shortfall (403) over another strategy's mismatch.
            if first is None or (missing and reason is None and not first.missing_scopes):
                first = TokenOutcome(s, cid, None, reason, missing if reason is None else (),
                                     verified.claims)
        assert first is not None
        return first

    def _admission(self, app: Application, name: str) -> Admission:
        got = Admission(self.view(app, (name,)), app.consumer, (), ())
        self._admissions[(app.id, name)] = got
        return got

    def view(self, app: Application, names: tuple[str, ...]) -> Application:
        """``app`` with only the registrations whose target uses one of ``names``."""
        key = (app.id, names)
        found = self._views.get(key)
        if found is None:
            targets = self.config.targets
            regs = tuple(r for r in app.registrations if targets[(r.kind, r.target)] in names)
            found = app if regs == app.registrations else Application(
                app.id, app.name, app.consumer, regs)
            self._views[key] = found
        return found


def _missing(keys: tuple[KeyStrategy, ...], tokens: tuple[TokenStrategy, ...]) -> Decision:
    # RFC 6750 §3.1: a request without a token gets the challenge and no error code.
    if keys and tokens:
        return deny(401, d.NO_CREDENTIAL, d.EITHER_CHALLENGE)
    if tokens:
        return deny(401, d.NO_TOKEN, d.BEARER_CHALLENGE)
    return deny(401, d.NO_API_KEY, d.KEY_CHALLENGE)
