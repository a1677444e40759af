"""The quick path of Enforcer.decide (issue 21) decides exactly as the full path does.

decide(req) tries Enforcer._quick first; decide(req, route(req)) always takes the full path.
Each catalog gets two enforcers (own counters, one clock) fed the same requests: every
decision, rate-limit headers included, must be equal, and the quick path must have served a
fair share of them. plain_path is held to screen, and CaseReadings.needed to the folded
match it lets the enforcer skip.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kong_ace import Decision, Enforcer, Request, hash_key
from kong_ace.core.enforcer import ROUTE_PATH_MAX, ROUTES_MAX, _lower_keys
from kong_ace.core.target import Screened, plain_path, screen
from tests.conftest import PARTNER_KEY, example_config
from tests.conftest import WEB_KEY as EXAMPLE_KEY

from .confusion_catalog import MOBILE, WEB_KEY, confusion2_config, confusion_config

EXPIRED, REVOKED, PENDING = "mirror-expired-key", "mirror-revoked-key", "mirror-pending-key"

# Lower-case templates, patterns with and without letters: the case-fold shortcut's ground.
MIRROR = {"apis": [{"name": "m", "operations": [
    {"method": "GET", "path": "/users/{id}", "operation_id": "getUser"},
    {"method": "GET", "path": "/users/export", "operation_id": "exportUsers"},
    {"method": "DELETE", "path": "/users/{id}", "operation_id": "deleteUser"},
    {"method": "GET", "path": "/files/{name}.json", "operation_id": "getJson"},
    {"method": "GET", "path": "/files/{name}", "operation_id": "getFile"},
    {"method": "GET", "path": "/days/{y}-{m}", "operation_id": "getDay"},
    {"method": "GET", "path": "/days/{y}", "operation_id": "getYear"},
    {"method": "GET", "path": "/a/b/c", "operation_id": "abc"},
    {"method": "GET", "path": "/a/{x}/d", "operation_id": "axd"},
]}], "packages": [{"name": "all", "operations": [{"api": "m"}]}],
    "applications": [
        {"id": "web-app", "credentials": [{"key_hash": "sha256:" + hash_key(WEB_KEY)}],
         "registrations": [{"package": "all", "status": "approved"}]},
        {"id": "old-app", "credentials": [
            {"key_hash": "sha256:" + hash_key(EXPIRED), "expires_at": 1_500_000},
            {"key_hash": "sha256:" + hash_key(REVOKED), "status": "revoked"}],
         "registrations": [{"package": "all", "status": "approved"}]},
        {"id": "pending-app", "credentials": [{"key_hash": "sha256:" + hash_key(PENDING)}],
         "registrations": [{"package": "all", "status": "pending"}]}]}

# One path, two services: the scope decides the operation.
SERVICES = {"apis": [
    {"name": "one", "base_path": "/s", "service": "one",
     "operations": [{"method": "GET", "path": "/x", "operation_id": "oneX"}]},
    {"name": "two", "base_path": "/s", "service": "two",
     "operations": [{"method": "GET", "path": "/x", "operation_id": "twoX"}]}],
    "packages": [{"name": "p", "operations": [{"api": "one"}]}],
    "applications": [{"id": "web-app", "credentials": [{"key_hash": "sha256:" + hash_key(WEB_KEY)}],
                      "registrations": [{"package": "p", "status": "approved"}]}]}

CATALOGS: dict[str, Callable[[], dict[str, Any]]] = {
    "services": lambda: SERVICES,
    "example": example_config,
    "example hide_credentials": lambda: {**example_config(), "hide_credentials": True},
    "example no key_in_query": lambda: {**example_config(), "key_in_query": False},
    "confusion": confusion_config,
    "confusion anonymous": lambda: confusion_config(anonymous="mobile"),
    "confusion2": confusion2_config,
    "confusion2 shop insensitive": lambda: confusion2_config(path_case={"shop": "insensitive"}),
    "confusion2 files sensitive": lambda: confusion2_config(path_case={"files": "sensitive"}),
    "confusion2 monitor": lambda: confusion2_config(enforcement="monitor"),
    "mirror": lambda: MIRROR,
    "mirror insensitive": lambda: {**MIRROR, "apis": [{**MIRROR["apis"][0],
                                                       "path_case": "insensitive"}]},
    "mirror open": lambda: {**MIRROR, "apis": [{**MIRROR["apis"][0], "auth_strategy": "none"}]},
    "mirror tight limits": lambda: {**MIRROR, "packages": [
        {"name": "all", "operations": [{"api": "m"}],
         "rate_limits": [{"limit": 3, "duration": "minute"}]}]},
}

PATHS = [
    "/", "", "files/users/7", "/files/users/7", "/files/users/7/", "/files//users/7",
    "/files/./users/7", "/files/users/%37", "/files/users/7;x", "/files/users/7#f",
    "/files/users/Export", "/files/users/EXPORT", "/files/users/export", "/files/Users/7",
    "/FILES/users/7", "/files/users/Ab7", "/files/users/\u00e4", "/files/users/\u0130",
    "/files/reports/2024-01-02.csv", "/files/reports/2024-01-02.CSV",
    "/files/flights/BA1", "/files/flights/7/manifest.json", "/files/flights/7/MANIFEST.JSON",
    "/files/jobs/a:cancel", "/files/jobs/a:CANCEL", "/files/items/7", "/svc/data",
    "/shop/Orders/1", "/shop/orders/1", "/shop/ORDERS/1", "/console/stats", "/uploads/x",
    "/flights/v1/flights", "/flights/v1/flights/BA1", "/flights/v1/Flights/BA1",
    "/flights/v1/flights/BA1/seats", "/flights/v1/flights/BA1/MANIFEST.json",
    "/flights/v1/airports/LHR", "/bookings/v2/bookings/7", "/bookings/v2/bookings/7/tickets/T.pdf",
    "/bookings/v2/bookings/7/tickets/T.PDF", "/users/7", "/users/Export", "/users/EXPORT",
    "/Users/7", "/files/A.json", "/files/A.JSON", "/files/README", "/days/2024-01",
    "/days/X-Y", "/days/XY", "/a/b/c", "/a/B/c", "/a/B/d", "/A/b/c", "/unknown/Path", "/s/x",
]
METHODS = ["GET", "HEAD", "DELETE", "POST", "get"]


def envelopes(key: str) -> Iterator[dict[str, Any]]:
    """Request parts besides method and path: plain ones and every shape the screen handles."""
    host = "public.example"
    yield {"headers": {"apikey": key}}
    yield {"headers": {"apikey": [key]}, "host": host, "target": None}
    yield {"headers": {"host": [host], "x-forwarded-for": ["10.0.0.1"], "apikey": [key]},
           "host": host, "authority": host}
    yield {"headers": {"apikey": key}, "normalized": True}
    yield {"headers": {"apikey": key}, "host": "ADMIN.example."}  # another scope, same path
    yield {"headers": {"apikey": key}, "service": {"id": "s1", "name": "one"}}
    yield {"headers": {"apikey": key}, "service": "two"}
    yield {"headers": {}}
    yield {"headers": {"apikey": "wrong-key"}}
    yield {"headers": {"apikey": [key, key]}}
    yield {"headers": {"apikey": [key, "other"]}}
    yield {"headers": {"apikey": ""}}
    yield {"headers": {"apikey": b"bytes-key"}}
    yield {"headers": {"apikey": [PARTNER_KEY]}}
    yield {"headers": {"apikey": [EXPIRED]}}  # expires while the clock moves on (see pair)
    yield {"headers": {"apikey": REVOKED}}
    yield {"headers": {"apikey": PENDING}}
    yield {"headers": {"Apikey": key}}
    yield {"headers": {"apikey": key, "APIKEY": "other"}}
    yield {"headers": {"apikey": key}, "query": {"apikey": [key]}}
    yield {"headers": {}, "query": {"apikey": [key]}}
    yield {"headers": {"apikey": key}, "query": {"apikey": True}}
    yield {"headers": {"apikey": key}, "query": {"page": ["2"]}}
    yield {"headers": {"apikey": key}, "query": {"_method": ["DELETE"]}}
    yield {"headers": {"apikey": key}, "query": {".method": ["DELETE"]}}
    yield {"headers": {"apikey": key, "x-http-method-override": "DELETE"}}
    yield {"headers": {"apikey": key, "x_http_method": "DELETE"}}
    yield {"headers": {"apikey": key, "x-ace-operation-id": "forged"}}
    yield {"headers": {"apikey": key, "x_ace_package": "forged"}}
    yield {"headers": {"apikey": key, "x-consumer-id": "forged"}}
    yield {"headers": {"apikey": key, "x-anonymous-consumer": "true"}}
    yield {"headers": {"apikey": key, "content-type": "application/x-www-form-urlencoded"},
           "body": "_method=DELETE"}
    yield {"headers": {"apikey": key, "content-type": "application/json"}}
    yield {"headers": {"apikey": key}, "headers_truncated": True}
    yield {"headers": {"apikey": key}, "authority": "other.example", "host": host}
    yield {"headers": {"apikey": key}, "authority": "PUBLIC.example", "host": host}
    yield {"headers": {"apikey": key}, "target": "/x#frag"}
    yield {"headers": {"apikey": key}, "consumer": MOBILE, "credential": True}
    yield {"headers": {"apikey": key}, "consumer": "mobile"}
    yield {"headers": {"apikey": key, "1": "digits"}}


def request(method: str, path: str, env: dict[str, Any]) -> Request:
    kw = dict(env)
    kw.setdefault("target", path)
    return Request(method, path, **kw)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pair(name: str) -> tuple[Enforcer, Enforcer, list[int]]:
    """Two enforcers of catalog ``name`` on one clock; the first counts its quick answers.

    The clock moves a day per request (every window restarts, so most requests are admitted)
    except for "tight" catalogs, which stand still (so most are rate limited).
    """
    clock = Clock()
    step = 0.0 if "tight" in name else 86_400.0
    quick, full = Enforcer(CATALOGS[name](), clock=clock), Enforcer(CATALOGS[name](), clock=clock)
    served = [0, 0]
    inner = quick._quick

    def counting(req: Request, key: str) -> Any:
        served[1] += 1
        got = inner(req, key)
        served[0] += type(got) is Decision
        return got

    quick._quick = counting  # type: ignore[method-assign]
    full.tick = lambda: setattr(clock, "now", clock.now + step)  # type: ignore[attr-defined]
    return quick, full, served


def same_decisions(quick: Enforcer, full: Enforcer, reqs: Iterator[Callable[[], Request]]) -> None:
    for make in reqs:
        full.tick()  # type: ignore[attr-defined]
        fast = quick.decide(make())
        req = make()
        slow = full.decide(req, full.route(req))
        assert fast == slow, make()


@pytest.mark.parametrize("name", list(CATALOGS))
def test_every_path_and_method_decides_alike(name: str) -> None:
    quick, full, served = pair(name)
    key = EXAMPLE_KEY if name.startswith("example") else WEB_KEY
    envs = list(itertools.islice(envelopes(key), 4))
    same_decisions(quick, full, (
        (lambda m=m, p=p, e=e: request(m, p, e))
        for p, m, e in itertools.product(PATHS, METHODS, envs)))
    if quick._quick_key is None:  # monitor mode: every decision takes the full path
        assert name.endswith("monitor") and served == [0, 0]
    elif "open" in name:  # every operation takes another strategy than the key
        assert served[0] == 0 and served[1] > 0
    elif name != "services":  # (its operations need a service: see the next test)
        assert served[0] >= 20, served  # the quick path did serve


@pytest.mark.parametrize("name", list(CATALOGS))
def test_every_request_shape_decides_alike(name: str) -> None:
    quick, full, served = pair(name)
    key = EXAMPLE_KEY if name.startswith("example") else WEB_KEY
    paths = ["/files/users/7", "/files/users/Export", "/flights/v1/flights/BA1",
             "/files/items/7", "/svc/data", "/users/Export", "/files/A.json", "/users/7",
             "/days/2024-01", "/s/x"]
    same_decisions(quick, full, (
        (lambda m=m, p=p, e=e: request(m, p, e))
        for e, p, m in itertools.product(envelopes(key), paths, ["GET", "POST"])))
    assert served[0] > 0 or name.endswith(("monitor", "open"))


def test_the_plain_request_takes_the_quick_path() -> None:
    # The real-Kong benchmark's request (tests/benchmarks/bench_realkong.py): a capital in the
    # path, one key header; the folded reading cannot differ, so no second match is needed.
    quick, _, served = pair("example")
    req = Request("GET", "/flights/v1/flights/BA1", {"host": "api.example.com",
                  "user-agent": "wrk", "apikey": EXAMPLE_KEY}, {}, "api.example.com", None, None,
                  "/flights/v1/flights/BA1", None, False, False, True)
    assert quick.catalog.case is not None and not quick.catalog.case.needed(req.path)
    assert quick.decide(req).allowed and served == [1, 1]


@pytest.mark.parametrize("name", list(CATALOGS))
def test_plain_path_is_what_screen_finds(name: str) -> None:
    policy = Enforcer(CATALOGS[name]()).catalog.policy
    seen = 0
    for env, path, method in itertools.product(envelopes(WEB_KEY), PATHS, METHODS[:4]):
        req = request(method, path, env)
        got = plain_path(req, req.headers)
        if got is not None:
            seen += 1
            assert screen(policy, req, _lower_keys(req.headers)) == Screened(None, method, got)
    assert seen > 100


@pytest.mark.parametrize("name", list(CATALOGS))
@pytest.mark.parametrize("host", [None, "public.example"])
def test_no_fold_needed_means_the_folded_match_agrees(name: str, host: str | None) -> None:
    cat = Enforcer(CATALOGS[name]()).catalog
    case = cat.case
    if case is None:
        return
    skipped = 0
    for path, method in itertools.product(PATHS, METHODS):
        if not path.startswith("/") or case.needed(path):
            continue
        skipped += path.lower() != path
        exact = cat.matcher.match(method, path, (), host)
        folded = case.matcher.match(method, path.lower(), (), host)
        assert case.resolve(exact, folded) is exact, (method, path)
    if case.words is not None:
        assert skipped > 5  # paths with capitals did skip the second match


def test_the_route_cache_keeps_scopes_apart_and_stays_bounded() -> None:
    e = Enforcer(confusion_config())
    key = {"apikey": WEB_KEY}
    public = e.decide(Request("GET", "/svc/data", headers=key, host="public.example"))
    admin = e.decide(Request("GET", "/svc/data", headers=key, host="admin.example"))
    assert public.operation_id == "publicData" and public.allowed
    assert (admin.operation_id, admin.status) == ("adminData", 403)  # in no package
    assert len(e._routes) == 2
    for i in range(ROUTES_MAX + 10):
        assert e.decide(Request("GET", f"/files/users/{i}", headers=key)).allowed
    assert 0 < len(e._routes) <= ROUTES_MAX
    long = "/files/users/" + "7" * ROUTE_PATH_MAX
    assert e.decide(Request("GET", long, headers=key)).allowed
    assert ("GET", long, (), "") not in e._routes and all(len(r[1]) <= ROUTE_PATH_MAX
                                                         for r in e._routes)
