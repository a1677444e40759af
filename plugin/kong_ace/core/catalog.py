"""Compile the plugin config into an immutable catalog: APIs, operations, packages, applications."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from kong_ace.core import lifecycle
from kong_ace.core.casefold import CaseConflict, CaseReadings, compile_case
from kong_ace.core.lifecycle import SUNSET_ACTIONS, UNDATED, Lifecycle
from kong_ace.core.matcher import Matcher, Operation, Scope, parse_template
from kong_ace.core.normalize import normalize_path
from kong_ace.core.spec import Spec, clean_base_path, compile_spec, load_spec_file, parse_document
from kong_ace.core.target import (
    BODY_OVERRIDE_ACTIONS,
    ESCAPED_SLASH_ACTIONS,
    METHOD_OVERRIDE_ACTIONS,
    UNINSPECTED_BODY_ACTIONS,
    Policy,
)
from kong_ace.errors import ConfigError
from kong_ace.limits.limiter import HEADER_STYLES, PERIODS, Limit
from kong_ace.limits.redis_settings import RedisSettings

MATCH_POLICIES = ("if_present", "required")
COMPANION_MODES = ("optional", "required")  # are the Lua companions (ace-context/-guard) required
KEY_STATUSES = ("active", "revoked")
REGISTRATION_STATUSES = ("approved", "pending", "rejected", "revoked")
WINDOW_TYPES = ("fixed", "sliding")
MIN_SYNC_RATE = 0.02
KEY_HASH_PREFIX = "sha256:"
ENFORCE, MONITOR = "enforce", "monitor"
ENFORCEMENTS = (ENFORCE, MONITOR)  # monitor: decide, let through, record the would-be outcome

# Keys Kong adds to every plugin config it hands a plugin server.
KONG_KEYS = frozenset(
    {"__plugin_id", "__seq__", "__key__", "__ws_id", "route_id", "service_id", "consumer_id",
     "plugin_instance_name"}
)
TOP_FIELDS = frozenset(
    {"match_policy", "anonymous", "key_names", "key_in_header", "key_in_query", "hide_credentials",
     "specs_dir", "apis", "packages", "applications", "rate_limiting", "companions",
     "path_with_escaped_slashes_action", "method_override_action",
     "body_method_override_action", "uninspected_body_action",
     "auth_strategies"}  # auth fields: compiled by core/strategies.py
    | {"log_summary"}
    | {"enforcement", "monitor_request_confusion", "monitor_header"}  # monitor mode
)
API_FIELDS = frozenset(
    {"name", "version", "spec_file", "spec", "base_path", "service", "hosts", "operations",
     "rate_limits", "auth_strategy", "path_case"}
    | {"enforcement", "deprecated", "sunset", "deprecation_link", "sunset_action"}
)
MANUAL_OP_FIELDS = frozenset({"method", "path", "operation_id"})
PACKAGE_FIELDS = frozenset({"name", "description", "rate_limits", "operations", "auth_strategy",
                            "enforcement"})
PACKAGE_OP_FIELDS = frozenset({"api", "method", "path", "operation_id", "rate_limits"})
LIMIT_FIELDS = frozenset({"limit", "duration"})
APP_FIELDS = frozenset({"id", "name", "consumer", "credentials", "registrations", "client_ids"})
CREDENTIAL_FIELDS = frozenset({"key_hash", "status", "expires_at"})
REGISTRATION_FIELDS = frozenset({"package", "api", "status"})
RATE_LIMITING_FIELDS = frozenset(
    {"sync_rate", "redis", "fault_tolerant", "hide_client_headers", "window_type", "headers"}
)
REDIS_FIELDS = frozenset(
    {"host", "port", "database", "username", "password", "ssl", "ssl_verify", "server_name",
     "timeout", "connect_timeout", "send_timeout", "read_timeout", "keepalive_pool_size",
     "cluster_nodes", "cluster_max_redirections", "sentinel_master", "sentinel_nodes",
     "sentinel_role", "sentinel_username", "sentinel_password"}
)
# Kong adds `$`-prefixed keys inside any record (kong/db/schema/init.lua process_auto_fields
# puts a "$refs" map of vault references next to the fields it resolved): never ACE's fields.
KONG_META_PREFIX = "$"
DURATIONS = {**{f"{k}s": v for k, v in PERIODS.items()}, **PERIODS}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
PATH_CASES = ("unknown", "sensitive", "insensitive")


@dataclass(frozen=True, slots=True)
class Api:
    """A registered API and its operations."""

    name: str
    version: str | None
    source: str
    base_path: str
    scope: Scope
    operations: tuple[Operation, ...]
    op_uids: frozenset[int]
    limits: tuple[Limit, ...]
    path_case: str = "unknown"  # how the upstream routes: unknown, sensitive, insensitive
    enforcement: str | None = None  # None: the top-level setting
    lifecycle: Lifecycle | None = None  # deprecation and sunset (None: neither)


@dataclass(frozen=True, slots=True)
class Package:
    """A named set of operations with a shared limit and per-operation overrides."""

    name: str
    description: str | None
    limits: tuple[Limit, ...]
    op_uids: frozenset[int]
    overrides: Mapping[int, tuple[Limit, ...]]
    enforcement: str | None = None  # None: each operation's API setting, else the top level


@dataclass(frozen=True, slots=True)
class Registration:
    """An application's registration to a package or a whole API."""

    kind: str  # "package" or "api"
    target: str
    status: str
    op_uids: frozenset[int]
    limits: tuple[Limit, ...]
    overrides: Mapping[int, tuple[Limit, ...]]
    bucket: str  # counter key prefix: "<app id>|pkg:<name>" or "<app id>|api:<name>"
    monitored: frozenset[int] = frozenset()  # operations this registration refuses in monitor mode

    def quota(self, op: Operation) -> tuple[str, tuple[Limit, ...]]:
        """The counter key and limits that charge ``op`` under this registration."""
        override = self.overrides.get(op.uid)
        if override is not None:
            return f"{self.bucket}|op:{op.id}", override
        return self.bucket, self.limits


@dataclass(frozen=True, slots=True)
class Application:
    """A calling application."""

    id: str
    name: str | None
    consumer: str | None
    registrations: tuple[Registration, ...]


@dataclass(frozen=True, slots=True)
class Credential:
    """A stored key hash and its state."""

    application: Application
    status: str
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything compiled from one plugin config; shared read-only by every request."""

    match_required: bool
    anonymous: str | None
    key_names: tuple[str, ...]
    key_header_names: tuple[str, ...]
    key_in_header: bool
    key_in_query: bool
    hide_credentials: bool
    apis: Mapping[str, Api]
    packages: Mapping[str, Package]
    applications: Mapping[str, Application]
    credentials: Mapping[str, Credential]  # by sha256 hex digest
    consumers: Mapping[str, Application]  # by the consumer reference in the config
    matcher: Matcher
    service_scoped: bool
    host_scoped: bool
    rate_limiting: Mapping[str, Any]
    fault_tolerant: bool
    hide_client_headers: bool
    sources: tuple[tuple[str, Path | None, str | None], ...] = field(default=())
    companions_required: bool = False  # no ace-context table: 500 rather than classic mode
    log_summary: bool = False  # classic mode: hand Kong's log plugins a decision summary

    policy: Policy = field(default=Policy())  # request-confusion options (SPEC §8)
    consumer_ids: Mapping[str, Application] = field(default_factory=dict)  # UUID refs, lower
    consumer_names: Mapping[str, Application] = field(default_factory=dict)  # other refs
    case: CaseReadings | None = None  # the case-folded reading (None: every API is sensitive)

    # Monitor mode (docs/operations.md): the top-level setting, the operations whose
    # operation-level setting is monitor, and whether anything is monitored at all.
    enforcement: str = ENFORCE
    monitored_ops: frozenset[int] = frozenset()
    monitoring: bool = False
    monitor_confusion: bool = False  # request-confusion refusals monitored too (opt-in)
    monitor_header: bool = False  # send X-ACE-Would-Deny upstream on a would-deny request
    lifecycles: Mapping[int, Lifecycle] = field(default_factory=dict)  # by operation uid

    def operations(self) -> list[Operation]:
        """Every operation, in configuration order."""
        return [op for api in self.apis.values() for op in api.operations]

    def is_anonymous(self, consumer: Any) -> bool:
        """Whether ``consumer`` is the configured anonymous consumer."""
        return self.anonymous is not None and refers_to(self.anonymous, consumer)

    def application_for(self, consumer: Any) -> Application | None:
        """The application a Kong consumer maps to (never for the anonymous consumer).

        A reference that is a UUID names the consumer's id, anything else its username, never
        its custom_id: another consumer's custom_id or username must not become this one.
        """
        if consumer is None or self.is_anonymous(consumer):
            return None
        if isinstance(consumer, str):
            return self.consumers.get(consumer)
        if not isinstance(consumer, Mapping):
            return None
        cid, name = consumer.get("id"), consumer.get("username")
        app = self.consumer_ids.get(cid.lower()) if isinstance(cid, str) else None
        if app is None and isinstance(name, str):
            app = self.consumer_names.get(name)
        return app


def is_uuid(ref: str) -> bool:
    """kong/tools/uuid.lua is_valid_uuid: 36 characters of 8-4-4-4-12 hex digits, any case."""
    return len(ref) == 36 and _UUID.fullmatch(ref) is not None


def refers_to(ref: str, consumer: Any) -> bool:
    """Whether a configured consumer reference names ``consumer`` (a string or Kong's map).

    As kong.client.load_consumer resolves a reference (kong/pdk/client.lua): a UUID by id,
    anything else by username; custom_id never.
    """
    if isinstance(consumer, str):
        return consumer == ref
    if not isinstance(consumer, Mapping):
        return False
    if is_uuid(ref):
        cid = consumer.get("id")
        return isinstance(cid, str) and cid.lower() == ref.lower()
    return consumer.get("username") == ref


def consumer_refs(consumer: Any) -> tuple[str, ...]:
    """The id and username a consumer (a string, or Kong's consumer map) goes by, for display."""
    if isinstance(consumer, str):
        return (consumer,) if consumer else ()
    if isinstance(consumer, Mapping):
        return tuple(v for v in (consumer.get("id"), consumer.get("username"))
                     if isinstance(v, str) and v)
    return ()


def hash_key(key: str | bytes) -> str:
    """The hex SHA-256 digest a credential is stored and looked up by."""
    raw = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()


def compile_catalog(config: Mapping[str, Any], base_dir: Path | None = None) -> Catalog:
    """Validate and compile a plugin config; raise ConfigError naming the place."""
    if not isinstance(config, Mapping):
        raise ConfigError("config", "must be a map")
    _no_unknown(config, TOP_FIELDS | KONG_KEYS, "", allow_dunder=True)
    policy = _choice(config, "match_policy", MATCH_POLICIES, "", "if_present")
    key_names = tuple(_str_list(config, "key_names", "", ["apikey"]))
    if not key_names:
        raise ConfigError("key_names", "must name at least one header or query parameter")
    specs_dir = _opt_str(config, "specs_dir", "")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if specs_dir:
        base = base / specs_dir

    matcher = Matcher()
    apis: dict[str, Api] = {}
    sources: list[tuple[str, Path | None, str | None]] = []
    uid = 0
    for i, raw in enumerate(_list(config, "apis", "")):
        api, source = _compile_api(raw, f"apis[{i}]", base, uid, matcher, apis)
        apis[api.name] = api
        sources.append(source)
        uid += len(api.operations)

    packages: dict[str, Package] = {}
    indexes: dict[str, _ApiIndex] = {}
    for i, raw in enumerate(_list(config, "packages", "")):
        pkg = _compile_package(raw, f"packages[{i}]", apis, indexes)
        if pkg.name in packages:
            raise ConfigError(f"packages[{i}].name", f"duplicate package name '{pkg.name}'")
        packages[pkg.name] = pkg

    applications: dict[str, Application] = {}
    credentials: dict[str, Credential] = {}
    consumers: dict[str, Application] = {}
    for i, raw in enumerate(_list(config, "applications", "")):
        _compile_application(raw, f"applications[{i}]", apis, packages, applications, credentials,
                             consumers)

    rl = _record(config, "rate_limiting", "")
    _compile_rate_limiting(rl)
    enforcement = _choice(config, "enforcement", ENFORCEMENTS, "", ENFORCE)
    monitored_ops = _monitored_operations(enforcement, apis, packages)
    _registration_settings(enforcement, apis, packages, applications, credentials, consumers)
    case = _compile_case(apis, matcher)
    consumer_ids = {ref.lower(): app for ref, app in consumers.items() if is_uuid(ref)}
    consumer_names = {ref: app for ref, app in consumers.items() if not is_uuid(ref)}
    return Catalog(
        match_required=policy == "required",
        anonymous=_opt_str(config, "anonymous", ""),
        key_names=key_names,
        key_header_names=tuple(n.lower() for n in key_names),
        key_in_header=_bool(config, "key_in_header", "", True),
        key_in_query=_bool(config, "key_in_query", "", True),
        hide_credentials=_bool(config, "hide_credentials", "", False),
        apis=apis,
        packages=packages,
        applications=applications,
        credentials=credentials,
        consumers=consumers,
        matcher=matcher,
        service_scoped=any(a.scope.service for a in apis.values()),
        host_scoped=any(a.scope.hosts for a in apis.values()),
        rate_limiting=rl,
        fault_tolerant=_bool(rl, "fault_tolerant", "rate_limiting", True),
        hide_client_headers=_bool(rl, "hide_client_headers", "rate_limiting", False),
        sources=tuple(sources),
        companions_required=_choice(config, "companions", COMPANION_MODES, "",
                                    "optional") == "required",
        policy=Policy(
            escaped_slashes=_choice(config, "path_with_escaped_slashes_action",
                                    ESCAPED_SLASH_ACTIONS, "", "reject"),
            method_override=_choice(config, "method_override_action", METHOD_OVERRIDE_ACTIONS,
                                    "", "strip"),
            base_paths=tuple(sorted({_prefix(a.base_path) for a in apis.values()})),
            body_override=_choice(config, "body_method_override_action", BODY_OVERRIDE_ACTIONS,
                                  "", "reject"),
            uninspected_body=_choice(config, "uninspected_body_action",
                                     UNINSPECTED_BODY_ACTIONS, "", "reject_if_ambiguous"),
        ),
        log_summary=_bool(config, "log_summary", "", False),
        enforcement=enforcement,
        monitored_ops=monitored_ops,
        monitoring=enforcement == MONITOR or any(
            x.enforcement == MONITOR for x in (*apis.values(), *packages.values())),
        monitor_confusion=_bool(config, "monitor_request_confusion", "", False),
        monitor_header=_bool(config, "monitor_header", "", False),
        lifecycles={op.uid: a.lifecycle for a in apis.values() if a.lifecycle is not None
                    for op in a.operations},
        consumer_ids=consumer_ids,
        consumer_names=consumer_names,
        case=case,
    )


# --- monitor mode -----------------------------------------------------------------------------


def _monitored_operations(top: str, apis: Mapping[str, Api],
                          packages: Mapping[str, Package]) -> frozenset[int]:
    """The operations whose own setting is monitor: the most specific setting wins.

    Packages that set ``enforcement`` beat the API's setting, which beats the top level; when
    packages holding an operation disagree, enforce wins (deny by default).
    """
    by_packages: dict[int, set[str]] = {}
    for pkg in packages.values():
        if pkg.enforcement is not None:
            for uid in pkg.op_uids:
                by_packages.setdefault(uid, set()).add(pkg.enforcement)
    out = set()
    for api in apis.values():
        for op in api.operations:
            said = by_packages.get(op.uid)
            if (said == {MONITOR}) if said else (api.enforcement or top) == MONITOR:
                out.add(op.uid)
    return frozenset(out)


def _registration_settings(top: str, apis: Mapping[str, Api], packages: Mapping[str, Package],
                           applications: dict[str, Application],
                           credentials: dict[str, Credential],
                           consumers: dict[str, Application]) -> None:
    """Fill each registration's monitored operations (its package, else the API, else top)."""
    if top == ENFORCE and not any(x.enforcement == MONITOR
                                  for x in (*apis.values(), *packages.values())):
        return
    api_of = {op.uid: a for a in apis.values() for op in a.operations}
    for app_id, app in list(applications.items()):
        regs = []
        for reg in app.registrations:
            if reg.kind == "package":
                pkg = packages[reg.target]
                monitored = frozenset(
                    uid for uid in reg.op_uids
                    if (pkg.enforcement or api_of[uid].enforcement or top) == MONITOR)
            else:
                monitored = reg.op_uids if (apis[reg.target].enforcement or top) == MONITOR \
                    else frozenset()
            regs.append(replace(reg, monitored=monitored))
        new = replace(app, registrations=tuple(regs))
        applications[app_id] = new
        for digest, cred in list(credentials.items()):
            if cred.application is app:
                credentials[digest] = replace(cred, application=new)
        for ref, mapped in list(consumers.items()):
            if mapped is app:
                consumers[ref] = new


def _compile_case(apis: Mapping[str, Api], matcher: Matcher) -> CaseReadings | None:
    shapes = {op.uid: _shape(op.path) for api in apis.values() for op in api.operations}
    try:
        return compile_case([(a.path_case, a.scope, a.operations) for a in apis.values()],
                            shapes, matcher)
    except CaseConflict as exc:
        raise ConfigError(f"apis[{list(apis).index(exc.api)}].path_case", str(exc)) from None


def _prefix(base_path: str) -> str:
    # As requests are compared: normalised like Kong's path, lower case, no trailing slash.
    return normalize_path(base_path or "/").rstrip("/").lower()


# --- APIs -------------------------------------------------------------------------------------

_SPEC_CACHE: dict[tuple[Any, ...], Spec] = {}
_SPEC_CACHE_LOCK = threading.Lock()
_SPEC_CACHE_SIZE = 64


def _load_spec(path: Path, source: str) -> Spec:
    # Config reloads and per-worker instances compile the same files: parse each version once.
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(source, f"cannot read spec: {exc.strerror or exc}") from None
    key = ("file", str(path), st.st_mtime_ns, st.st_size, source)
    with _SPEC_CACHE_LOCK:
        spec = _SPEC_CACHE.get(key)
    if spec is None:
        spec = load_spec_file(path, source, validate=False)
        with _SPEC_CACHE_LOCK:
            if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
                _SPEC_CACHE.pop(next(iter(_SPEC_CACHE)))
            _SPEC_CACHE[key] = spec
    return spec


def _compile_api(
    raw: Any, place: str, base: Path, uid: int, matcher: Matcher, apis: Mapping[str, Api]
) -> tuple[Api, tuple[str, Path | None, str | None]]:
    raw = _as_record(raw, place, API_FIELDS)
    name = _req_str(raw, "name", place)
    if name in apis:
        raise ConfigError(f"{place}.name", f"duplicate API name '{name}'")
    spec_file = _opt_str(raw, "spec_file", place)
    spec_text = _opt_str(raw, "spec", place)
    manual = raw.get("operations")
    given = [k for k, v in (("spec_file", spec_file), ("spec", spec_text), ("operations", manual))
             if v is not None]
    if len(given) != 1:
        what = " and ".join(given) if given else "none of them"
        raise ConfigError(place, f"needs exactly one of spec_file, spec or operations (got {what})")

    source_ref: tuple[str, Path | None, str | None]
    if spec_file is not None:
        path = Path(spec_file) if Path(spec_file).is_absolute() else base / spec_file
        source = f"{place}.spec_file: {spec_file}"
        spec = _load_spec(path, source)
        source_ref = (source, path, None)
        entries = [(op.method, op.template, op.operation_id, f"{source}: paths.{op.template}")
                   for op in spec.operations]
        spec_base = spec.base_path
    elif spec_text is not None:
        source = f"{place}.spec"
        spec = compile_spec(parse_document(spec_text, source), source, None, validate=False)
        source_ref = (source, None, spec_text)
        entries = [(op.method, op.template, op.operation_id, f"{source}: paths.{op.template}")
                   for op in spec.operations]
        spec_base = spec.base_path
    else:
        source = f"{place}.operations"
        source_ref = (source, None, None)
        entries = _manual_operations(manual, source)
        spec_base = ""

    base_path = raw.get("base_path")
    base_path = clean_base_path(_opt_str(raw, "base_path", place) or "") if base_path is not None \
        else spec_base
    scope = Scope(
        service=_opt_str(raw, "service", place),
        hosts=frozenset(h.lower() for h in _str_list(raw, "hosts", place, [])),
    )
    ops: list[Operation] = []
    seen_ids: dict[str, int] = {}
    for method, template, op_id, op_place in entries:
        op = Operation(
            id=op_id or f"{method} {template}",
            api=name,
            method=method,
            path=(base_path + template) if template != "/" or not base_path else base_path,
            template=template,
            uid=uid + len(ops),
        )
        try:
            matcher.add(op, scope)
        except ValueError as exc:
            raise ConfigError(op_place, str(exc)) from None
        seen_ids[op.id] = seen_ids.get(op.id, 0) + 1
        ops.append(op)
    limits = _limits(raw, place)
    api = Api(name, _opt_str(raw, "version", place), source, base_path, scope, tuple(ops),
              frozenset(op.uid for op in ops), limits,
              _choice(raw, "path_case", PATH_CASES, place, "unknown"),
              _choice(raw, "enforcement", ENFORCEMENTS, place, None, optional=True),
              _lifecycle(raw, place, name))
    return api, source_ref


def _lifecycle(raw: Mapping[str, Any], place: str, name: str) -> Lifecycle | None:
    deprecated = raw.get("deprecated")
    if deprecated in (True, "true"):
        deprecated_at: float | None = UNDATED
    elif deprecated in (None, False, "false"):
        deprecated_at = None
    else:
        deprecated_at = _timestamp(deprecated, f"{place}.deprecated", "true, false, ")
    sunset_at = _timestamp(raw.get("sunset"), f"{place}.sunset")
    link = _opt_str(raw, "deprecation_link", place)
    action = _choice(raw, "sunset_action", SUNSET_ACTIONS, place, "warn")
    if link is not None:
        if deprecated_at is None:
            raise ConfigError(f"{place}.deprecation_link", "needs deprecated (true or a date)")
        if not link.isascii() or any(c in link for c in '<>" \t\r\n') or not link.isprintable():
            raise ConfigError(f"{place}.deprecation_link", "must be a URI without spaces, "
                                                           "quotes or angle brackets")
    if raw.get("sunset_action") is not None and sunset_at is None:
        raise ConfigError(f"{place}.sunset_action", "needs a sunset date")
    if sunset_at is not None and deprecated_at is not None and sunset_at < deprecated_at:
        # RFC 9745 §4: the Sunset timestamp MUST NOT be earlier than the Deprecation one.
        raise ConfigError(f"{place}.sunset", "is earlier than the deprecated date (RFC 9745 §4)")
    return lifecycle.build(name, deprecated_at, sunset_at, link, action)


def _manual_operations(manual: Any, place: str) -> list[tuple[str, str, str | None, str]]:
    if not isinstance(manual, list):
        raise ConfigError(place, "must be a list of {method, path}")
    out = []
    for j, raw in enumerate(manual):
        p = f"{place}[{j}]"
        raw = _as_record(raw, p, MANUAL_OP_FIELDS)
        method = _req_str(raw, "method", p).upper()
        path = _req_str(raw, "path", p)
        try:
            parse_template(path)
        except ValueError as exc:
            raise ConfigError(f"{p}.path", f"malformed path template: {exc}") from None
        out.append((method, path, _opt_str(raw, "operation_id", p), p))
    return out


# --- packages ---------------------------------------------------------------------------------


def _shape(path: str) -> str:
    out, depth = [], 0
    for ch in path:
        if ch == "{":
            depth += 1
            if depth == 1:
                out.append("{}")
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    shaped = "".join(out)
    return shaped[:-1] if len(shaped) > 1 and shaped.endswith("/") else shaped


@dataclass(slots=True)
class _ApiIndex:
    """Lookups of an API's operations by (method, path shape) and by id, for package entries."""

    by_shape: dict[tuple[str, str], Operation]
    by_id: dict[str, list[Operation]]

    @classmethod
    def of(cls, api: Api) -> _ApiIndex:
        by_shape: dict[tuple[str, str], Operation] = {}
        by_id: dict[str, list[Operation]] = {}
        for op in api.operations:
            by_shape.setdefault((op.method, _shape(op.path)), op)
            by_shape.setdefault((op.method, _shape(op.template)), op)
            by_id.setdefault(op.id, []).append(op)
        return cls(by_shape, by_id)


def _compile_package(
    raw: Any, place: str, apis: Mapping[str, Api], indexes: dict[str, _ApiIndex]
) -> Package:
    raw = _as_record(raw, place, PACKAGE_FIELDS)
    name = _req_str(raw, "name", place)
    limits = _limits(raw, place)
    uids: dict[int, None] = {}
    overrides: dict[int, tuple[Limit, ...]] = {}
    entries = raw.get("operations")
    if not isinstance(entries, list):
        raise ConfigError(f"{place}.operations", "must be a list")
    for j, entry in enumerate(entries):
        p = f"{place}.operations[{j}]"
        entry = _as_record(entry, p, PACKAGE_OP_FIELDS)
        api_name = _req_str(entry, "api", p)
        api = apis.get(api_name)
        if api is None:
            raise ConfigError(p, f"unknown API '{api_name}'")
        method = _opt_str(entry, "method", p)
        path = _opt_str(entry, "path", p)
        op_id = _opt_str(entry, "operation_id", p)
        if op_id is not None and (method or path):
            raise ConfigError(p, "give either operation_id or method and path, not both")
        index = indexes.get(api_name)
        if index is None:
            index = indexes[api_name] = _ApiIndex.of(api)
        if op_id is not None:
            found = index.by_id.get(op_id, [])
            if not found:
                raise ConfigError(p, f"API '{api_name}' has no operation with operation_id "
                                     f"'{op_id}'")
            if len(found) > 1:
                raise ConfigError(p, f"operation_id '{op_id}' is not unique in API '{api_name}'")
            selected = found
        elif method or path:
            if not (method and path):
                raise ConfigError(p, "method and path go together")
            op = index.by_shape.get((method.upper(), _shape(path)))
            if op is None:
                raise ConfigError(p, f"API '{api_name}' has no operation '{method.upper()} {path}'")
            selected = [op]
        else:
            selected = list(api.operations)
        override = _limits(entry, p) if entry.get("rate_limits") is not None else None
        for op in selected:
            if op.uid in uids and (len(selected) == 1 or override is not None):
                raise ConfigError(p, f"operation '{op.id}' of API '{api_name}' is already in "
                                     f"package '{name}'")
            uids[op.uid] = None
            if override is not None:
                overrides[op.uid] = override
    return Package(name, _opt_str(raw, "description", place), limits, frozenset(uids), overrides,
                   _choice(raw, "enforcement", ENFORCEMENTS, place, None, optional=True))


# --- applications -----------------------------------------------------------------------------


def _compile_application(
    raw: Any,
    place: str,
    apis: Mapping[str, Api],
    packages: Mapping[str, Package],
    applications: dict[str, Application],
    credentials: dict[str, Credential],
    consumers: dict[str, Application],
) -> None:
    raw = _as_record(raw, place, APP_FIELDS)
    app_id = _req_str(raw, "id", place)
    if app_id in applications:
        raise ConfigError(f"{place}.id", f"duplicate application id '{app_id}'")
    consumer = _opt_str(raw, "consumer", place)
    regs: list[Registration] = []
    targets: set[tuple[str, str]] = set()
    for j, reg in enumerate(_list(raw, "registrations", place)):
        p = f"{place}.registrations[{j}]"
        reg = _as_record(reg, p, REGISTRATION_FIELDS)
        pkg_name = _opt_str(reg, "package", p)
        api_name = _opt_str(reg, "api", p)
        if (pkg_name is None) == (api_name is None):
            raise ConfigError(p, "needs exactly one of package or api")
        status = _choice(reg, "status", REGISTRATION_STATUSES, p, None)
        if pkg_name is not None:
            pkg = packages.get(pkg_name)
            if pkg is None:
                raise ConfigError(p, f"unknown package '{pkg_name}'")
            target = ("package", pkg_name)
            regs.append(Registration("package", pkg_name, status, pkg.op_uids, pkg.limits,
                                     pkg.overrides, f"{app_id}|pkg:{pkg_name}"))
        else:
            api = apis.get(api_name)  # type: ignore[arg-type]
            if api is None:
                raise ConfigError(p, f"unknown API '{api_name}'")
            target = ("api", api.name)
            regs.append(Registration("api", api.name, status, api.op_uids, api.limits, {},
                                     f"{app_id}|api:{api.name}"))
        if target in targets:
            raise ConfigError(p, f"application '{app_id}' is already registered to {target[0]} "
                                 f"'{target[1]}'")
        targets.add(target)
    app = Application(app_id, _opt_str(raw, "name", place), consumer, tuple(regs))
    for j, cred in enumerate(_list(raw, "credentials", place)):
        p = f"{place}.credentials[{j}]"
        cred = _as_record(cred, p, CREDENTIAL_FIELDS)
        digest = _key_digest(_req_str(cred, "key_hash", p), f"{p}.key_hash")
        if digest in credentials:
            other = credentials[digest].application.id
            raise ConfigError(f"{p}.key_hash", f"the same key is already a credential of "
                                               f"application '{other}'")
        credentials[digest] = Credential(
            app, _choice(cred, "status", KEY_STATUSES, p, "active"),
            _timestamp(cred.get("expires_at"), f"{p}.expires_at"),
        )
    if consumer is not None:
        if consumer in consumers:
            raise ConfigError(f"{place}.consumer", f"consumer '{consumer}' is already mapped to "
                                                   f"application '{consumers[consumer].id}'")
        consumers[consumer] = app
    applications[app_id] = app


def _key_digest(value: str, place: str) -> str:
    if not value.startswith(KEY_HASH_PREFIX):
        raise ConfigError(place, "must be 'sha256:<64 hex digits>' (kong-ace keygen prints one)")
    digest = value[len(KEY_HASH_PREFIX):].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(place, "must be 'sha256:<64 hex digits>' (kong-ace keygen prints one)")
    return digest


def _timestamp(value: Any, place: str, also: str = "") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(place, f"must be {also}an ISO 8601 time or epoch seconds")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):  # YAML parses unquoted timestamps
        parsed = value
    elif isinstance(value, date):  # and unquoted dates: midnight UTC
        parsed = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    elif isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)  # epoch seconds as a string: Kong's schema types the field string
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(place, f"'{value}' is not an ISO 8601 time") from None
    else:
        raise ConfigError(place, "must be an ISO 8601 time or epoch seconds")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


# --- rate limits ------------------------------------------------------------------------------


def _limits(raw: Mapping[str, Any], place: str) -> tuple[Limit, ...]:
    out: list[Limit] = []
    for j, entry in enumerate(_list(raw, "rate_limits", place)):
        p = f"{place}.rate_limits[{j}]"
        entry = _as_record(entry, p, LIMIT_FIELDS)
        limit = entry.get("limit")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"{p}.limit", "must be an integer >= 0")
        duration = _req_str(entry, "duration", p)
        period = DURATIONS.get(duration)
        if period is None:
            raise ConfigError(f"{p}.duration", f"'{duration}' is not one of seconds, minutes, "
                                               "hours, days")
        if any(lim.period == period for lim in out):
            raise ConfigError(p, f"a second limit per {duration.rstrip('s')}")
        out.append(Limit(limit, period))
    return tuple(out)


def _compile_rate_limiting(rl: Mapping[str, Any]) -> None:
    place = "rate_limiting"
    _no_unknown(rl, RATE_LIMITING_FIELDS, place)
    _choice(rl, "window_type", WINDOW_TYPES, place, "sliding")
    sync = rl.get("sync_rate")
    if sync is not None:
        if isinstance(sync, bool) or not isinstance(sync, (int, float)):
            raise ConfigError(f"{place}.sync_rate", "must be a number of seconds")
        if sync != 0 and sync < MIN_SYNC_RATE:
            raise ConfigError(f"{place}.sync_rate", f"must be 0 or at least {MIN_SYNC_RATE}")
        if rl.get("redis") is None:
            raise ConfigError(f"{place}.redis", "is required when sync_rate is set")
    _choice(rl, "headers", HEADER_STYLES, place, "kong")
    if rl.get("redis") is not None:
        redis = _record(rl, "redis", place)
        _no_unknown(redis, REDIS_FIELDS, f"{place}.redis")
        if sync is not None:
            # Types, ranges and topology (Cluster xor Sentinel xor one host), naming the field.
            RedisSettings.from_config(dict(redis), f"{place}.redis")


# --- field readers ----------------------------------------------------------------------------


def is_kong_meta(key: Any) -> bool:
    """True for a key Kong adds inside a record (`$refs`), which carries no ACE meaning."""
    return isinstance(key, str) and key.startswith(KONG_META_PREFIX)


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def _no_unknown(raw: Mapping[str, Any], allowed: frozenset[str], place: str,
                allow_dunder: bool = False) -> None:
    for key in raw:
        if key in allowed or is_kong_meta(key):
            continue
        if not (allow_dunder and str(key).startswith("__")):
            name = str(key)
            if not name or not name.isprintable() or name.strip() != name:
                name = repr(name)  # an empty, blank or control-character name stays visible
            raise ConfigError(_join(place, name), "unknown field")


def _as_record(raw: Any, place: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(place, "must be a map")
    _no_unknown(raw, allowed, place)
    return raw


def _record(raw: Mapping[str, Any], key: str, place: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(_join(place, key), "must be a map")
    return value


def _list(raw: Mapping[str, Any], key: str, place: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(_join(place, key), "must be a list")
    return value


def _opt_str(raw: Mapping[str, Any], key: str, place: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(_join(place, key), "must be a non-empty string")
    return value


def _req_str(raw: Mapping[str, Any], key: str, place: str) -> str:
    value = _opt_str(raw, key, place)
    if value is None:
        raise ConfigError(_join(place, key), "is required")
    return value


def _str_list(raw: Mapping[str, Any], key: str, place: str, default: list[str]) -> list[str]:
    if raw.get(key) is None:
        return default
    values = _list(raw, key, place)
    for j, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{_join(place, key)}[{j}]", "must be a non-empty string")
    return values


def _bool(raw: Mapping[str, Any], key: str, place: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(_join(place, key), "must be true or false")
    return value


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], place: str,
            default: str | None, optional: bool = False) -> Any:
    value = raw.get(key)
    if value is None:
        if default is None and not optional:
            raise ConfigError(_join(place, key), f"is required (one of {', '.join(choices)})")
        return default
    if value not in choices:
        raise ConfigError(_join(place, key), f"'{value}' is not one of {', '.join(choices)}")
    return value
