"""The `ace` plugin for Kong's Python PDK: read the request, decide, apply the decision.

Every PDK call is one RPC round trip between Kong and the plugin server, so the adapter reads
only what the decision needs and writes with multi-header setters:

- allowed: ``$request`` (method + URI in one call), headers, [service], [consumer,
  [credential]], upstream ``set_headers``, [response ``set_headers`` for rate-limit headers];
- denied: ``$request``, headers, [service], [consumer, [credential]], ``response.exit``.

The Host header comes with the headers (it is what Kong's router matched); the request line
gives the raw target and the host of an absolute-form target (SPEC §8).

With the Lua companions (ace-context, ace-guard; ``companion.py``) it is two calls whatever
the outcome: ``kong.nginx.get_ctx`` of ace-context's table and ``kong.nginx.set_ctx`` of the
verdict. Every request starts with that ``get_ctx``; without the table it reads as above
(classic mode), or answers 500 when the config says the companions are required.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from cachetools import TTLCache

from kong_ace.core.catalog import is_uuid
from kong_ace.core.decision import IDENTITY_HEADERS, UNEXPECTED, Decision, Request
from kong_ace.core.logsafe import escape
from kong_ace.core.matcher import Match
from kong_ace.core.normalize import normalize_path
from kong_ace.core.target import ANONYMOUS_HEADER, ESCAPED_SLASH
from kong_ace.errors import ConfigError
from kong_ace.gateway import metrics, rejected, summary
from kong_ace.gateway.companion import REQUEST_KEY, VERDICT_KEY, request_from, verdict_for
from kong_ace.gateway.compiled import CACHE, Compiled, plugin_id
from kong_ace.gateway.events import current_event, last_call
from kong_ace.gateway.request_line import kong_escape, parse_query, parse_request, strip_query
from kong_ace.gateway.schema import CONFIG_FIELDS

log = logging.getLogger("kong_ace")

version = "0.1.0"
priority = 955  # after every auth plugin, before acl (950) and rate-limiting (910)
Schema = CONFIG_FIELDS

ERROR_BODY = {"message": UNEXPECTED}
NO_COMPANIONS = "ace: companions are required but ace-context left no request table"

# Headers Kong's auth plugins set for the authenticated consumer (kong/constants.lua HEADERS).
CONSUMER_ID = "X-Consumer-ID"
CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID"
CONSUMER_USERNAME = "X-Consumer-Username"
CREDENTIAL_IDENTIFIER = "X-Credential-Identifier"
ANONYMOUS = "X-Anonymous-Consumer"

# An empty list clears a header: Kong's set_headers hands it to ngx.req.set_header, which with
# an empty table makes the same FFI call as ngx.req.clear_header (lua-resty-core request.lua).
CLEAR: list[str] = []
CLEAR_IDENTITY = {name: CLEAR for name in IDENTITY_HEADERS}
# kong.request.get_headers() reads at most this many header lines (ngx.req.get_headers default,
# kong/pdk/request.lua get_headers): that many back means some may be missing.
MAX_HEADERS = 100
# Classic mode reads a POST form/JSON body under an API up to this size (Content-Length);
# a larger or chunked one is left uninspected (uninspected_body_action).
BODY_LIMIT = 64 * 1024
BAD_REQUEST_BODY = {"message": ESCAPED_SLASH}


class PDKError(Exception):
    """A PDK call answered with an error (Lua-style ``data, err``)."""


def _v(result: Any) -> Any:
    # kong-pdk's Lua-style mode returns (data, err); ours returns data. Lists never come as
    # tuples from msgpack, so a tuple is always the Lua-style pair.
    if type(result) is tuple and len(result) == 2:
        data, err = result
        if err:
            raise PDKError(str(err))
        return data
    return result


class ConsumerCache:
    """Consumers loaded with kong.client.load_consumer, cached per process for a while."""

    def __init__(self, ttl: float = 30.0, maxsize: int = 1024) -> None:
        self._lock = threading.Lock()
        self._cache: TTLCache[str, Mapping[str, Any]] = TTLCache(maxsize=maxsize, ttl=ttl)

    def get(self, kong: Any, ref: str) -> Mapping[str, Any] | None:
        """The consumer with id or username ``ref``, or None if Kong has none."""
        with self._lock:
            found = self._cache.get(ref)
        if found is not None:
            return found
        # A UUID names the id only (no fall-back to a username), as the catalog maps consumers.
        consumer = _v(kong.client.load_consumer(ref, not is_uuid(ref)))
        if isinstance(consumer, Mapping) and consumer.get("id"):
            with self._lock:
                self._cache[ref] = consumer
            return consumer
        return None


CONSUMERS = ConsumerCache()


def compiled_count() -> int:
    """How many distinct compiled configs this process holds (for plugin.GetStatus)."""
    return len(CACHE)


def config_status() -> dict[str, Any]:
    """Rejected configs, cache sizes, compiled configs, store health (for plugin.GetStatus)."""
    recorder = metrics.RECORDER
    return {**CACHE.status(),
            "Configs": [{"Hash": c.key, "Instances": c.users, "CompileSeconds": c.compile_seconds}
                        for c in CACHE.entries()],
            "Stores": metrics.STORES.status(),
            "IdPs": metrics.IDPS.status(),
            "Metrics": None if recorder is None else {"Applications": recorder.applications}}


perf_counter = time.perf_counter
_new_tuple = tuple.__new__


class Outcome(NamedTuple):
    """One request's decision, the time decide() took, and whether Kong was told to exit."""

    decision: Decision | None  # None: no decision (companions required but missing)
    seconds: float
    exited: bool


class Plugin:
    """One plugin instance (one per nginx worker and config version); the config is shared."""

    # Every request starts with this read (_access): the server answers HandleEvent with it
    # and starts the handler at Kong's next Step, a round trip into the handler less. An
    # instance that starts otherwise (failing, a notice to log) declares nothing: Kong
    # would make the read for nothing.
    first_calls: dict[str, tuple[str, tuple[Any, ...]]] = {
        "access": ("kong.nginx.get_ctx", (REQUEST_KEY,))}

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.compiled: Compiled | None = None
        self._released = False
        self.failing: str | None = None  # rejected, no last good config: 500 to every request
        self._notice: str | None = None  # rejected, last good serving: tell Kong's log once
        pid = plugin_id(config)
        try:
            self.compiled = CACHE.acquire(config)
        except ConfigError as exc:
            pair = getattr(exc, "rejected", None)
            if pair is None or pair[0] is None:  # Kong always sends __plugin_id
                raise
            if rejected.NOTICES.first(*pair):
                # Kong logs StartInstance's error once and answers this request 500.
                # rejected.py says why every later StartInstance of it succeeds instead.
                told = ConfigError(exc.place, exc.problem + rejected.FAILED)
                told.logged = True  # type: ignore[attr-defined]
                raise told from None
            self.failing = pair[1]
            self.first_calls = {}
            return
        metrics.watch(self.compiled.enforcer.limiter)
        rejection = CACHE.rejection(pid)
        if rejection is None:
            rejected.NOTICES.forget(pid)
        elif rejection.serving == self.compiled.key and rejected.NOTICES.first(
                pid, rejection.config_hash):
            self._notice = rejected.serving(pid, rejection.config_hash, rejection.error,
                                            self.compiled.key)
            self.first_calls = {}

    def close(self) -> None:
        """Kong closed this instance (or the server reaped it): drop our hold on the config.

        The reference stays: an event that already looked this instance up still decides with
        it (the server may close an instance Kong still uses, see gateway/rpc.py).
        """
        if self.compiled is not None and not self._released:
            self._released = True
            CACHE.release(self.compiled)

    def status(self) -> dict[str, Any]:
        """What plugin.GetStatus shows about this instance."""
        c = self.compiled
        if self.failing is not None:
            return {"ConfigHash": None, "Failing": self.failing}
        return {"ConfigHash": None if c is None else c.key}

    def access(self, kong: Any) -> None:
        """Enforce on one request; any internal error is a 500, never a silent pass."""
        if self.failing is not None:
            self._fail_closed(kong)
            return
        if self._notice is not None:
            notice, self._notice = self._notice, None
            with contextlib.suppress(Exception):
                kong.log.err(notice)
        try:
            outcome: Outcome | None = self._access(kong)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing may escape to Kong
            outcome = None
            # Name the failure, not the request: headers may hold keys.
            log.exception("ace: internal error in access phase: %s", type(exc).__name__)
            # Kong logs plugin-server output at info level only: tell Kong's error log too.
            with contextlib.suppress(Exception):
                kong.log.err("ace: internal error: " + type(exc).__name__)
            kong.response.exit(500, ERROR_BODY)
        recorder = metrics.RECORDER
        if recorder is not None:
            try:
                record(recorder, self.compiled, outcome)
            except Exception as exc:  # noqa: BLE001 - counting must never change an answer
                log.error("ace: metrics failed: %s", type(exc).__name__)

    @staticmethod
    def _fail_closed(kong: Any) -> None:
        # One PDK call, no log line: Kong's log had it once (rejected.py), status and
        # metrics have it always.
        kong.response.exit(500, ERROR_BODY)
        recorder = metrics.RECORDER
        if recorder is not None:
            event = current_event()
            recorder.decision(None, None, 0.0, event.calls if event is not None else 0,
                              summary.CONFIG_REJECTED)

    def _access(self, kong: Any) -> Outcome:
        compiled = self.compiled
        if compiled is None:
            raise RuntimeError("instance closed")
        ctx = kong.nginx.get_ctx(REQUEST_KEY)
        if type(ctx) is tuple:  # _v() only where it can matter: a call less per request
            ctx = _v(ctx)
        if ctx is not None:  # ace-context ran; anything but its table is an error (a 500)
            return self._companion(kong, compiled, ctx)
        if compiled.enforcer.catalog.companions_required:
            log.error(NO_COMPANIONS)
            with contextlib.suppress(Exception):  # Kong's error log, as for internal errors
                kong.log.err(NO_COMPANIONS)
            kong.response.exit(500, ERROR_BODY)
            return Outcome(None, 0.0, True)
        req, raw_query, routed = self._read(kong, compiled)
        start = time.perf_counter()
        decision = compiled.enforcer.decide(req, routed)
        seconds = time.perf_counter() - start
        if compiled.enforcer.catalog.log_summary:
            # Before apply: nothing can follow kong.response.exit. kong/pdk/log.lua
            # set_serialize_value (access phase allowed) stores it in ngx.ctx; serialize() in
            # the log phase hands it to every logging plugin under the "ace" key.
            api = summary.api_of(compiled.enforcer, decision)
            _v(kong.log.set_serialize_value(summary.SUMMARY_KEY,
                                            summary.summary(decision, api)))
        return Outcome(decision, seconds, apply(kong, decision, raw_query, compiled,
                                                 req.path))

    @staticmethod
    def _companion(kong: Any, c: Compiled, ctx: Any) -> Outcome:
        # The one write: ace-guard applies the verdict, or answers 503 if it never arrives.
        req = request_from(ctx)
        start = perf_counter()
        d = c.enforcer.decide(req)
        seconds = perf_counter() - start
        # The last call: the handler ends now and Kong's Step after it is answered without
        # a round trip into it (events.last_call); an error from Kong there is a 500 exit.
        done = last_call(kong.nginx.set_ctx, VERDICT_KEY,
                         verdict_for(d, req.target or "", c.anonymous, req.path))
        if type(done) is tuple:
            _v(done)
        # tuple.__new__: Outcome's own __new__ is a Python frame, this is one request's.
        return _new_tuple(Outcome, (d, seconds, False))

    @staticmethod
    def _read(kong: Any, c: Compiled) -> tuple[Request, str, Match | None]:
        parsed = parse_request(_v(kong.nginx.get_var("request")))
        if parsed is None:  # unusual request line: ask Kong for each part
            method = _v(kong.request.get_method())
            uri = _v(kong.request.get_path_with_query()) or "/"
            authority = None
        else:
            method, uri, authority = parsed
        path, _, raw_query = uri.partition("?")
        headers = _v(kong.request.get_headers()) or {}
        service = _v(kong.router.get_service()) if c.service_scoped else None
        # Parsed whenever present: a `_method` override matters even without keys in the query.
        query = parse_query(raw_query) if raw_query else {}
        req = Request(method, path, headers, query, _first(headers.get("host")), service, None,
                      uri, authority, None, _line_count(headers) >= MAX_HEADERS)
        # Routed here (decide() reuses it): the consumer and the body only matter once an
        # operation matched, and the trie lookup is cheaper than a round trip.
        routed = c.enforcer.route(req)
        if routed.screened.needs_body:  # type: ignore[attr-defined]
            # A POST form/JSON body under an API may hold `_method` (Laravel): one read.
            req.body = _read_body(kong, headers)
            req.body_spilled = req.body is None
            routed = c.enforcer.route(req)
        if c.needs_consumer and routed.operation is not None:
            consumer = req.consumer = _v(kong.client.get_consumer())
            if consumer is not None and _needs_credential(c, consumer, headers):
                # Another plugin's anonymous consumer has no credential (key-auth
                # set_consumer): one more read, only for a consumer ACE would trust.
                req.credential = bool(_v(kong.client.get_credential()))
        return req, raw_query, routed


def _read_body(kong: Any, headers: Mapping[str, Any]) -> bytes | None:
    """The POST body when it can be read safely; None: left uninspected.

    kong.request.get_raw_body(0) reads the body from memory or from nginx's temporary file.
    Only a body whose Content-Length is at most BODY_LIMIT is read: Kong 3.9.1 packs the
    result as binary (kong/runloop/plugin_servers/rpc/mp_rpc.lua must_fix fix_raw), and the
    nil get_raw_body returns for a body it cannot read raises in Kong (a 500). Not
    kong.request.get_body: Kong's get_step_method takes a `_method` key of any table a PDK
    call returns as the RPC method of the reply, so a form with `_method=DELETE` turns the
    reply into an unknown RPC method, and Kong lets the request through unchecked.
    """
    length = _first(headers.get("content-length"))
    if not isinstance(length, str) or not length.isdigit() or int(length) > BODY_LIMIT:
        return None  # chunked, or too large to read at every request
    body = _v(kong.request.get_raw_body(0))
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return body if isinstance(body, bytes) else None


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _line_count(headers: Mapping[str, Any]) -> int:
    return sum(len(v) if isinstance(v, list) else 1 for v in headers.values())


def _needs_credential(c: Compiled, consumer: Any, headers: Mapping[str, Any]) -> bool:
    cat = c.enforcer.catalog
    marked = _first(headers.get(ANONYMOUS_HEADER))
    if isinstance(marked, str) and marked.strip().lower() == "true":
        return False  # already known anonymous: the core ignores this consumer
    if cat.is_anonymous(consumer):
        return False
    return cat.anonymous is not None or cat.application_for(consumer) is not None


def apply(kong: Any, d: Decision, raw_query: str, c: Compiled, path: str | None = None) -> bool:
    """Make Kong carry out ``d``; True when the request was answered (exited).

    ``path``: the request's raw path, needed only when ``d.upstream_path`` is set.
    """
    if not d.allowed:
        kong.response.exit(d.status or 500, d.body or ERROR_BODY, dict(d.headers) or None)
        return True
    if d.upstream_path is not None and _forward_path(kong, d.upstream_path, path):
        return True
    # An operation matched: ACE owns every identity header, seen or not (Kong reads only
    # the first 100 request headers), and clearing rides on the same call.
    upstream: dict[str, Any] = {} if d.operation_id is None else dict(CLEAR_IDENTITY)
    for name in d.clear_upstream_headers:
        upstream[name] = CLEAR
    upstream.update(d.upstream_headers)
    if d.consumer is not None:
        consumer = CONSUMERS.get(kong, d.consumer)
        if consumer is None:
            # Like key-auth with a missing anonymous consumer: a configuration fault, a 500.
            log.error("ace: consumer '%s' is configured but Kong has no such consumer",
                      escape(d.consumer))
            kong.response.exit(500, ERROR_BODY)
            return True
        _v(kong.client.authenticate(consumer, None))
        upstream.update(consumer_headers(consumer, anonymous=d.consumer == c.anonymous))
    if upstream:
        if d.clear_upstream_headers:
            upstream = _no_clear_over_set(upstream)
        _v(kong.service.request.set_headers(upstream))
    if d.clear_query:
        _v(kong.service.request.set_raw_query(strip_query(raw_query, d.clear_query)))
    if d.headers:
        headers = d.headers
        _v(kong.response.set_headers(headers if type(headers) is dict else dict(headers)))
    return False


def record(recorder: metrics.Recorder, c: Compiled | None, outcome: Outcome | None) -> None:
    """Count one request in the metrics (after apply, so its every PDK call counts)."""
    event = current_event()
    calls = event.calls if event is not None else 0
    if outcome is None or outcome.decision is None:
        why = summary.INTERNAL_ERROR if outcome is None else summary.COMPANIONS_MISSING
        recorder.decision(None, None, 0.0, calls, why)
        return
    d = outcome.decision
    api = None if d.api is not None or c is None else summary.api_of(c.enforcer, d)
    if c is not None and c.deprecated_apis:
        name = d.api or api
        if name in c.deprecated_apis:
            recorder.deprecated_call(d, name)  # type: ignore[arg-type]
    if outcome.exited and d.allowed:
        # Admitted, then answered by apply() itself: what it answered is the event's exit.
        exit_call = event.exit_call if event is not None else None
        args = (exit_call or {}).get("Args") or [500]
        status = args[0] if isinstance(args[0], int) else 500
        body = args[1] if len(args) > 1 else None
        message = body.get("message") if isinstance(body, dict) else None
        recorder.decision(d, api, outcome.seconds, calls, summary.exit_reason(status, message),
                          status)
        return
    recorder.decision(d, api, outcome.seconds, calls)


def _no_clear_over_set(upstream: dict[str, Any]) -> dict[str, Any]:
    # nginx sets and clears by case-insensitive name, in Kong's pairs() order: a clear of
    # `x-consumer-id` could run after the set of `X-Consumer-ID`. The set replaces it anyway.
    setting = {k.lower() for k, v in upstream.items() if v is not CLEAR}
    return {k: v for k, v in upstream.items() if v is not CLEAR or k.lower() not in setting}


def _forward_path(kong: Any, wanted: str, path: str | None) -> bool:
    """Forward the unescaped path; True when the request had to be refused instead."""
    current = _v(kong.nginx.get_var("upstream_uri"))
    if not isinstance(current, str) or path is None or current == kong_escape(
            normalize_path(path)):
        _v(kong.service.request.set_path(wanted))
        return False
    # The route rewrote the path (strip_path, a service path): unescape that path the same way,
    # unless that would bring back a dot segment or an empty one.
    rewritten = current
    for escaped in ("%2F", "%2f", "%5C", "%5c"):
        rewritten = rewritten.replace(escaped, "/")
    if normalize_path(rewritten) != rewritten:
        kong.response.exit(400, BAD_REQUEST_BODY)
        return True
    _v(kong.service.request.set_path(rewritten))
    return False


def consumer_headers(consumer: Mapping[str, Any], *, anonymous: bool) -> dict[str, Any]:
    """The upstream headers Kong's auth plugins set for an authenticated consumer."""
    def value(key: str) -> Any:
        v = consumer.get(key)
        return v if isinstance(v, str) and v else CLEAR

    return {
        CONSUMER_ID: value("id"),
        CONSUMER_CUSTOM_ID: value("custom_id"),
        CONSUMER_USERNAME: value("username"),
        CREDENTIAL_IDENTIFIER: CLEAR,
        ANONYMOUS: "true" if anonymous else CLEAR,
    }
