"""Which Kong route carries each API operation: the `unmatched` analysis behind `kong-ace check`.

An operation is carried by a route when a request for it (its method, its path template with
sample values in the parameters, a host the route or the API names) is routed by Kong to that
route, the route's service is one the API is scoped to, and ACE then matches the request to this
very operation. An operation no such request reaches is **unmatched**: Kong answers 404 before
ACE runs, so no application can ever call it. When only some sample values get through (a regex
route such as `~/flights/\\d+$`) for some host or header set, the operation is **partial**.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from kong_ace.core.enforcer import Enforcer
from kong_ace.core.matcher import Operation
from kong_ace.ops.deckfile import Route
from kong_ace.ops.router import PathMatcher, Router, host_matches

# Parameter values tried for each template: a number and a word, since regex routes often
# accept only one of the two.
SAMPLES = ("1", "ace-sample")
WILDCARD_LABEL = "ace-sample"
_PARAM = re.compile(r"\{[^{}]*\}")

NO_ROUTE_PATH = "no route path matches {path}"
WRONG_METHOD = "{routes} match the path but allow only {methods}"
WRONG_HOST = "route '{route}' matches the path only for hosts {hosts}"
WRONG_HEADERS = "route '{route}' matches the path only with headers {headers}"
WRONG_SERVICE = ("Kong routes it to route '{route}' of service '{service}', but API '{api}' "
                 "is scoped to service '{scope}'")
NO_SERVICE = "Kong routes it to route '{route}', which has no service"
OTHER_OPERATION = "route '{route}' carries the path, but ACE matches it to operation '{other}'"
API_HOSTS = "API '{api}' only matches hosts {hosts}, which no route carrying the path accepts"
TIE = ("routes {routes} carry {method} {path} with the same priority; Kong picks one by route "
       "id, so which one is not defined")


@dataclass
class Coverage:
    """The routes that carry one operation."""

    operation: Operation
    packages: list[str]
    routes: list[Route] = field(default_factory=list)
    partial: bool = False
    reason: str | None = None

    @property
    def status(self) -> str:
        """matched, partial or unmatched."""
        if not self.routes:
            return "unmatched"
        return "partial" if self.partial else "matched"


def sample_paths(template: str) -> list[str]:
    """Concrete request paths for a template, one per sample value."""
    if "{" not in template:
        return [template]
    return [_PARAM.sub(value, template) for value in SAMPLES]


def host_instance(pattern: str) -> str:
    """A concrete host a route or API host pattern accepts."""
    if pattern.startswith("*"):
        return WILDCARD_LABEL + pattern[1:]
    if pattern.endswith("*"):
        return pattern[:-1] + WILDCARD_LABEL
    return pattern


class CoverageAnalyser:
    """Runs sample requests for every operation through the router model and the core."""

    def __init__(self, enforcer: Enforcer, router: Router) -> None:
        self.enforcer = enforcer
        self.router = router
        self.catalog = enforcer.catalog
        self.warnings: list[str] = []
        self.used: set[int] = set()  # id() of the path matchers that carried an operation
        route_hosts = {h for m in router.matchers for h in m.route.hosts}
        self._route_hosts = sorted(host_instance(h) for h in route_hosts)
        self._header_sets = [{}] + [
            {k: v[0].removeprefix("~*") for k, v in r.headers.items()}
            for r in _unique(m.route for m in router.matchers) if r.headers
        ]

    def analyse(self) -> list[Coverage]:
        """Coverage of every operation, in configuration order."""
        return [self.operation(op) for op in self.catalog.operations()]

    def packages_of(self, op: Operation) -> list[str]:
        """Names of the packages that contain an operation."""
        return [name for name, pkg in self.catalog.packages.items() if op.uid in pkg.op_uids]

    def operation(self, op: Operation) -> Coverage:
        """Which routes carry one operation."""
        cov = Coverage(op, self.packages_of(op))
        api = self.catalog.apis[op.api]
        hosts: list[str | None] = [None, *self._route_hosts]
        hosts += sorted(host_instance(h) for h in api.scope.hosts)
        samples = sample_paths(op.path)
        for host in dict.fromkeys(hosts):
            for headers in self._header_sets:
                carried = 0
                for sample in samples:
                    route = self._carrier(op, sample, host, headers)
                    if route is not None:
                        carried += 1
                        if route not in cov.routes:
                            cov.routes.append(route)
                # Requests like these reach a route for some parameter values only.
                cov.partial = cov.partial or 0 < carried < len(samples)
        if not cov.routes:
            cov.reason = self._reason(op, samples[0], api.scope.hosts)
        return cov

    def _carrier(self, op: Operation, path: str, host: str | None,
                 headers: dict[str, str]) -> Route | None:
        m = self.router.find(op.method, path, host, headers)
        if m is None or m.route.service is None:
            return None
        got = self.enforcer.match(op.method, path, host=host, service=m.route.service.as_kong())
        if got is None or got.uid != op.uid:
            return None
        self.used.add(id(m))
        ties = [r for r in self.router.ties(m, op.method, path, host, headers)
                if r.service is not None]
        if ties:
            msg = TIE.format(routes=", ".join(f"'{r.label}'" for r in [m.route, *ties]),
                             method=op.method, path=op.path)
            if msg not in self.warnings:
                self.warnings.append(msg)
        return m.route

    def idle_paths(self) -> list[PathMatcher]:
        """Route paths that carry no operation (call after analyse)."""
        return [m for m in self.router.matchers
                if id(m) not in self.used and m.route.service is not None]

    def _reason(self, op: Operation, path: str, api_hosts: frozenset[str]) -> str:
        """Why no route carries an operation, from the first route whose path matches."""
        candidates = [m for m in self.router.matchers if m.path_matches(path)]
        if not candidates:
            return NO_ROUTE_PATH.format(path=path)
        api = self.catalog.apis[op.api]
        for m in candidates:
            r = m.route
            if r.methods and op.method not in r.methods:
                continue
            if r.service is None:
                return NO_SERVICE.format(route=r.label)
            scope = api.scope.service
            if scope is not None and scope not in r.service.as_kong().values():
                return WRONG_SERVICE.format(route=r.label, service=r.service.label, api=op.api,
                                            scope=scope)
            if api_hosts and r.hosts and not any(
                    host_matches(h, host_instance(a)) for h in r.hosts for a in api_hosts):
                continue
            got = self.enforcer.match(op.method, path, host=_first(api_hosts),
                                      service=r.service.as_kong())
            if got is not None and got.uid != op.uid:
                return OTHER_OPERATION.format(route=r.label, other=got.id)
        if api_hosts:
            return API_HOSTS.format(api=op.api, hosts=", ".join(sorted(api_hosts)))
        r = candidates[0].route
        if all(m.route.methods and op.method not in m.route.methods for m in candidates):
            routes = _unique(m.route for m in candidates)
            methods = dict.fromkeys(x for route in routes for x in route.methods)
            return WRONG_METHOD.format(routes=", ".join(f"'{x.label}'" for x in routes),
                                       methods=", ".join(methods))
        if r.hosts:
            return WRONG_HOST.format(route=r.label, hosts=", ".join(r.hosts))
        return WRONG_HEADERS.format(route=r.label, headers=", ".join(r.headers))


def _first(hosts: frozenset[str]) -> str | None:
    return host_instance(sorted(hosts)[0]) if hosts else None


def _unique(routes: Iterable[Route]) -> list[Route]:
    return list({id(r): r for r in routes}.values())
