"""Prometheus metrics of the plugin server, served on an opt-in loopback HTTP listener.

The hot path only adds to plain counters under one native lock (about 1 µs a request, no
allocation once a label set has been seen); a ``prometheus_client`` collector turns them into
metric families when Prometheus scrapes. Everything that is state rather than traffic
(instances, compiled configs, events in flight) is read from the server at scrape time.
"""

from __future__ import annotations

import _thread
import ipaddress
import logging
import socket
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer

from kong_ace import observe
from kong_ace.core.decision import Decision
from kong_ace.gateway import summary as s
from kong_ace.gateway.compiled import CACHE
from kong_ace.limits.storage.base import StorageUnavailable
from kong_ace.limits.storage.memory import MemoryStorage

log = logging.getLogger("kong_ace.gateway.metrics")

PREFIX = "kong_ace"
PROXIED = "proxied"  # the status label of a request ACE let through (upstream answers it)
OVERFLOW = "_other"  # the application label once MAX_SERIES label sets exist
MAX_SERIES = 10_000  # decision label sets; a safety net for the application label
# Seconds; decide() takes ~10 µs locally, a Redis round trip ~0.2 ms, its timeout 2 s.
DECISION_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                    0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
PDK_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 15)
DECISION_LABELS = ("status", "reason", "package", "api", "operation")
WOULD_DENY_LABELS = ("status", "reason", "api", "operation")  # monitor mode: the would-be denial
DEPRECATED_LABELS = ("api", "package")  # calls to a deprecated API version
WOULD_DENY = "would_deny"  # the reason label of a request monitor mode let through

LOOPBACK_ONLY = ("--metrics-listen {address}: not a loopback address; metrics name "
                 "applications and operations, so pass --metrics-allow-remote (or "
                 "KONG_ACE_METRICS_ALLOW_REMOTE=1) to expose them beyond this host")
BAD_ADDRESS = "--metrics-listen {address}: expected HOST:PORT, e.g. 127.0.0.1:9542"


def _native_lock() -> Any:
    # Like limits/storage/memory.py: gevent's patched Lock is Python code; an OS lock is safe
    # because nothing holding it yields (no I/O, no logging inside).
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return monkey.get_original("_thread", "allocate_lock")()
    return threading.Lock()


class Histogram:
    """Counts per bucket and their sum; the caller holds the owner's lock."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs, as the exposition format wants them."""
        out, running = [], 0
        for bound, count in zip((*map(repr, map(float, self.bounds)), "+Inf"), self.counts,
                                strict=True):
            running += count
            out.append((bound, running))
        return out


class Recorder:
    """What every decision adds to the metrics; one per process, shared by every instance."""

    def __init__(self, *, applications: bool = False) -> None:
        self.applications = applications
        self._lock = _native_lock()
        self.decisions: dict[tuple[str, ...], int] = {}
        self.would_deny: dict[tuple[str, ...], int] = {}
        self.deprecated: dict[tuple[str, ...], int] = {}
        self.decision_seconds = Histogram(DECISION_BUCKETS)
        self.pdk_calls = Histogram(PDK_BUCKETS)

    def decision(self, decision: Decision | None, api: str | None, seconds: float, calls: int,
                 why: str | None = None, status_code: int = 500) -> None:
        """Count one request: its decision (None: it failed), decide() time and PDK calls.

        ``why``: the edge answered the request itself (``status_code``) for this reason.
        """
        if decision is None:
            key: tuple[str, ...] = (str(status_code), why or s.INTERNAL_ERROR, "", "", "")
            app = ""
        else:
            if why is not None:
                status, reason = str(status_code), why
            elif decision.would_deny is not None:
                status, reason = PROXIED, WOULD_DENY
                self._would_deny(decision.would_deny, api)
            elif decision.allowed:
                status, reason = PROXIED, s.reason(decision)
            else:
                status, reason = str(decision.status), s.reason(decision)
            key = (status, reason, decision.package or "", decision.api or api or "",
                   decision.operation_id or "")
            app = decision.application_id or ""
        if self.applications:
            key += (app,)
        with self._lock:
            counts = self.decisions
            n = counts.get(key)
            if n is None and len(counts) >= MAX_SERIES and self.applications:
                key = (*key[:-1], OVERFLOW)
                n = counts.get(key)
            counts[key] = 1 if n is None else n + 1
            self.decision_seconds.observe(seconds)
            self.pdk_calls.observe(calls)

    def _would_deny(self, would: Decision, api: str | None) -> None:
        key: tuple[str, ...] = (str(would.status), s.reason(would), would.api or api or "",
                                would.operation_id or "")
        self._count(self.would_deny, key, would.application_id)

    def deprecated_call(self, decision: Decision, api: str) -> None:
        """Count one call to an operation of a deprecated API version (who must migrate)."""
        self._count(self.deprecated, (api, decision.package or ""), decision.application_id)

    def _count(self, counts: dict[tuple[str, ...], int], key: tuple[str, ...],
               app: str | None) -> None:
        if self.applications:
            key += (app or "",)
        with self._lock:
            n = counts.get(key)
            if n is None and len(counts) >= MAX_SERIES and self.applications:
                key = (*key[:-1], OVERFLOW)
                n = counts.get(key)
            counts[key] = 1 if n is None else n + 1

    def families(self) -> Iterator[Metric]:
        """The decision metrics as they stand."""
        app_label = ("application",) if self.applications else ()
        labels = DECISION_LABELS + app_label
        with self._lock:
            would_deny = list(self.would_deny.items())
            deprecated = list(self.deprecated.items())
            decisions = list(self.decisions.items())
            seconds = (self.decision_seconds.buckets(), self.decision_seconds.total)
            calls = (self.pdk_calls.buckets(), self.pdk_calls.total)
        fam = CounterMetricFamily(f"{PREFIX}_decisions", "Requests decided, by outcome",
                                  labels=labels)
        for key, count in decisions:
            fam.add_metric(list(key), count)
        yield fam
        fam = CounterMetricFamily(f"{PREFIX}_would_deny", "Requests monitor mode let through "
                                  "that enforcement would have denied, by would-be status and "
                                  "reason", labels=WOULD_DENY_LABELS + app_label)
        for key, count in would_deny:
            fam.add_metric(list(key), count)
        yield fam
        fam = CounterMetricFamily(f"{PREFIX}_deprecated_calls", "Requests to operations of a "
                                  "deprecated or sunset API version, by package",
                                  labels=DEPRECATED_LABELS + app_label)
        for key, count in deprecated:
            fam.add_metric(list(key), count)
        yield fam
        yield _histogram("decision_seconds", "Time to decide one request (match, authenticate, "
                         "authorize, count)", *seconds)
        yield _histogram("pdk_calls_per_request", "PDK calls per request, each one round "
                         "trip between Kong and the plugin server", *calls)


def _histogram(name: str, doc: str, buckets: list[tuple[str, int]],
               total: float) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(f"{PREFIX}_{name}", doc)
    fam.add_metric([], buckets, total)
    return fam


class Health:
    """Calls to something the plugin depends on: counts, errors, latency, last outcome.

    Always on (not only with metrics): ``kong-ace status`` reports it too.
    """

    LABEL = "dependency"  # the label naming which one (metrics), and its status key
    KEY = "Dependency"
    CALLS = "dependency_calls"
    SECONDS = "dependency_seconds"
    WHAT = "a dependency"
    BUCKETS = STORE_BUCKETS

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = _native_lock()
        self._clock = clock
        # (name, op) -> [calls, errors]; (name, op) -> latency; name -> breaker, last outcome
        self.calls: dict[tuple[str, str], list[int]] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.breakers: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}

    def call(self, name: str, op: str, seconds: float, error: str | None) -> None:
        """One call to ``name`` took ``seconds``; ``error`` names its failure, if any."""
        key = (name, op)
        now = self._clock()
        with self._lock:
            counts = self.calls.get(key)
            if counts is None:
                counts = self.calls[key] = [0, 0]
                self.latency[key] = Histogram(self.BUCKETS)
            counts[0] += 1
            self.latency[key].observe(seconds)
            last = self.last.setdefault(name, {})
            last["last_ok"] = error is None
            if error is None:
                last["ok"] = now
            else:
                counts[1] += 1
                last["error"] = now
                last["error_message"] = error

    def breaker(self, name: str, state: str) -> None:
        """``name``'s circuit breaker is now ``state`` (observe.BREAKER_STATES)."""
        with self._lock:
            self.breakers[name] = state

    def status(self) -> list[dict[str, Any]]:
        """Per name: calls, errors, last success and failure, breaker state, healthy."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for (name, op), (calls, errors) in self.calls.items():
                entry = out.setdefault(name, {self.KEY: name, "Calls": 0, "Errors": 0})
                entry["Calls"] += calls
                entry["Errors"] += errors
                entry.setdefault("Ops", []).append(op)
            for name, state in self.breakers.items():
                out.setdefault(name, {self.KEY: name, "Calls": 0, "Errors": 0})["Breaker"] = state
            for name, entry in out.items():
                last = self.last.get(name, {})
                entry["LastOk"] = last.get("ok")
                entry["LastError"] = last.get("error")
                entry["LastErrorMessage"] = last.get("error_message")
                # Healthy: the last call succeeded and no breaker is open.
                entry["Healthy"] = (last.get("last_ok", True)
                                    and entry.get("Breaker") != observe.OPEN)
            return list(out.values())

    def families(self) -> Iterator[Metric]:
        """The metrics as they stand."""
        with self._lock:
            calls = {k: list(v) for k, v in self.calls.items()}
            latency = {k: (h.buckets(), h.total) for k, h in self.latency.items()}
            breakers = dict(self.breakers)
        label = self.LABEL
        fam = CounterMetricFamily(f"{PREFIX}_{self.CALLS}", f"Calls to {self.WHAT}",
                                  labels=[label, "op", "outcome"])
        for (name, op), (n, errors) in calls.items():
            fam.add_metric([name, op, "ok"], n - errors)
            fam.add_metric([name, op, "error"], errors)
        yield fam
        hist = HistogramMetricFamily(f"{PREFIX}_{self.SECONDS}", f"Time of a call to {self.WHAT}",
                                     labels=[label, "op"])
        for (name, op), (buckets, total) in latency.items():
            hist.add_metric([name, op], buckets, total)
        yield hist
        if isinstance(self, Stores):
            gauge = GaugeMetricFamily(f"{PREFIX}_store_breaker_state", "Circuit-breaker state "
                                      "of a rate-limit store (1 for the current state)",
                                      labels=[label, "state"])
            for name, current in breakers.items():
                for state in observe.BREAKER_STATES:
                    gauge.add_metric([name, state], 1.0 if state == current else 0.0)
            yield gauge


class Stores(Health):
    """The rate-limit stores (Redis); the in-process counters do no I/O and are not watched."""

    LABEL, KEY, CALLS, SECONDS = "store", "Store", "store_calls", "store_seconds"
    WHAT = "a rate-limit store"


class IdPs(Health):
    """Fetches of signing keys from identity providers (discovery and JWKS), by issuer."""

    LABEL, KEY, CALLS, SECONDS = "issuer", "Issuer", "idp_fetches", "idp_fetch_seconds"
    WHAT = "an identity provider"


STORES = Stores()
IDPS = IdPs()
observe.on_breaker_change(STORES.breaker)
observe.on_idp_fetch(lambda issuer, seconds, error, what: IDPS.call(issuer, what, seconds, error))
# Set by the server when --metrics-listen is given; the plugin records decisions only then.
RECORDER: Recorder | None = None


class WatchedStore:
    """A rate-limit store whose calls are timed and counted in ``Stores``."""

    def __init__(self, inner: Any, name: str, stores: Stores = STORES) -> None:
        self.inner = inner
        self.name = name
        self._stores = stores

    def acquire(self, bucket: str, windows: Any, now: float) -> Any:
        """The inner store's acquire, timed."""
        return self._timed("acquire", self.inner.acquire, bucket, windows, now)

    def sync(self, counters: Any) -> Any:
        """The inner store's sync (the background push of synced counters), timed."""
        return self._timed("sync", self.inner.sync, counters)

    def _timed(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            out = fn(*args)
        except StorageUnavailable as exc:
            self._stores.call(self.name, op, time.perf_counter() - start,
                              type(exc.__cause__ or exc).__name__)
            raise
        self._stores.call(self.name, op, time.perf_counter() - start, None)
        return out

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


_WATCH_LOCK = threading.Lock()  # instances of one config may start at once (threading mode)


def watch(limiter: Any, stores: Stores = STORES) -> None:
    """Time and count the calls of ``limiter``'s store, unless it is local (idempotent)."""
    with _WATCH_LOCK:
        store = limiter.storage
        if isinstance(store, (MemoryStorage, WatchedStore)):
            return
        remote = getattr(store, "redis", None)
        if remote is not None:
            # Synced counters: requests count locally; only the background sync talks to Redis.
            if not isinstance(remote, WatchedStore):
                store.redis = WatchedStore(remote, "redis", stores)
            return
        limiter.storage = WatchedStore(store, "redis", stores)


class Collector:
    """The prometheus_client collector of one plugin server."""

    def __init__(self, recorder: Recorder, server: Any, stores: Stores = STORES,
                 idps: IdPs = IDPS, cache: Any = CACHE) -> None:
        self.recorder = recorder
        self.server = server
        self.stores = stores
        self.idps = idps
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        """Every kong_ace metric, read now."""
        yield from self.recorder.families()
        yield from self.stores.families()
        yield from self.idps.families()
        server = self.server
        yield GaugeMetricFamily(f"{PREFIX}_events_in_flight", "Requests between HandleEvent "
                                "and their last Step", value=len(server.events))
        held: dict[tuple[str, str], int] = {}
        compiled: dict[str, float] = {}
        for inst in list(server.instances.values()):
            entry = getattr(inst.plugin, "compiled", None)
            chash = getattr(entry, "key", "") or ""
            pid = str(inst.plugin_id or "")
            held[(pid, chash)] = held.get((pid, chash), 0) + 1
            if entry is not None:
                compiled[chash] = getattr(entry, "compile_seconds", 0.0)
        fam = GaugeMetricFamily(f"{PREFIX}_instances", "Plugin instances, by Kong plugin id "
                                "and the hash of the config they run",
                                labels=["plugin_id", "config_hash"])
        for (pid, chash), n in held.items():
            fam.add_metric([pid, chash], n)
        yield fam
        yield GaugeMetricFamily(f"{PREFIX}_compiled_configs", "Distinct compiled configs held",
                                value=len(compiled))
        fam = GaugeMetricFamily(f"{PREFIX}_config_compile_seconds", "Time it took to compile "
                                "each config held", labels=["config_hash"])
        for chash, seconds in compiled.items():
            fam.add_metric([chash], seconds)
        yield fam
        fam = GaugeMetricFamily(f"{PREFIX}_config_rejected", "1 for each plugin whose latest "
                                "config ACE rejected; serving: the hash of the last good config "
                                "it runs instead (empty: none, requests get 500)",
                                labels=["plugin_id", "config_hash", "serving"])
        for r in self.cache.rejections():
            fam.add_metric([str(r.plugin_id), r.config_hash, r.serving or ""], 1)
        yield fam


def parse_listen(address: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError if unusable."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(BAD_ADDRESS.format(address=address))
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not allow_remote and not _loopback(host):
        raise ValueError(LOOPBACK_ONLY.format(address=address))
    return host, int(port_text)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it could resolve anywhere


def enable(*, applications: bool = False) -> Recorder:
    """Start recording decisions in this process."""
    global RECORDER
    RECORDER = Recorder(applications=applications)
    return RECORDER


def serve(host: str, port: int, server: Any, recorder: Recorder) -> Any:
    """Serve ``/metrics`` on ``host:port`` from a native thread; raises OSError if it cannot bind.

    A native thread, even in gevent mode: building the exposition text of many series is CPU
    work (about 10 ms per 1,000 series); in a greenlet it would hold every request for that long,
    in a thread of its own the requests keep their share of the interpreter. The thread builds
    its own sockets, so under gevent they belong to that thread's own hub.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(recorder, server))
    registry.register(ProcessCollector(registry=None))
    app = make_wsgi_app(registry)
    monkey = sys.modules.get("gevent.monkey")
    patched = monkey is not None and monkey.is_module_patched("threading")
    start_thread = (monkey.get_original("_thread", "start_new_thread") if patched
                    else _thread.start_new_thread)
    ready = _native_lock()
    ready.acquire()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            httpd = make_server(host, port, app, _server_class(host), handler_class=_Quiet)
        except OSError as exc:
            box["error"] = exc
            ready.release()
            return
        box["httpd"] = httpd
        ready.release()
        httpd.serve_forever()

    start_thread(run, ())
    ready.acquire()  # start-up only: the server is not serving Kong yet
    if "error" in box:
        raise box["error"]
    log.info("metrics on http://%s/metrics", f"[{host}]:{port}" if ":" in host else
             f"{host}:{port}")
    return box["httpd"]


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, *_: Any) -> None:
        pass


def _server_class(host: str) -> type[ThreadingWSGIServer]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server
