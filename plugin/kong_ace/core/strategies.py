"""Auth strategies (SPEC §11): compile `auth_strategies` and who uses them, per operation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kong_ace.core.catalog import (
    Application,
    Catalog,
    _as_record,
    _bool,
    _list,
    _opt_str,
    _req_str,
    _str_list,
)
from kong_ace.core.jwks import JwksError, parse_jwks
from kong_ace.errors import ConfigError

KEY_AUTH, OPENID_CONNECT = "key_auth", "openid_connect"
TYPES = (KEY_AUTH, OPENID_CONNECT)
DEFAULT = "default"  # the strategy made of the top-level key settings
NONE = "none"  # open: matched, no application, no application limits
RESERVED = (DEFAULT, NONE)
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256")
DEFAULT_CLAIMS = ("client_id", "azp")
DEFAULT_LEEWAY = 30.0
MAX_LEEWAY = 3600.0

KEY_FIELDS = frozenset({"key_names", "key_in_header", "key_in_query", "hide_credentials"})
TOKEN_FIELDS = frozenset({"issuer", "jwks_uri", "jwks", "audience", "credential_claim", "scopes",
                          "algorithms", "leeway"})
STRATEGY_FIELDS = frozenset({"name", "type"}) | KEY_FIELDS | TOKEN_FIELDS

RESERVED_NAME = "'{name}' is reserved (the top-level key settings are '{default}'; '{none}' " \
                "means open access)"
DUPLICATE = "duplicate auth strategy name '{name}'"
UNKNOWN = "unknown auth strategy '{name}' (known: {known})"
WRONG_TYPE_FIELD = "only for type {type}"
BAD_ALG = ("'{alg}' is not allowed: use asymmetric algorithms ({allowed}); 'none' and HS* are "
           "never accepted")
BAD_URL = "must be an http(s) URL"
JWKS_AND_URI = "give jwks or jwks_uri, not both"
BAD_JWKS = "inline JWKS: {error}"
BAD_LEEWAY = f"must be a number of seconds between 0 and {MAX_LEEWAY:g}"
DUPLICATE_CLIENT = "client id '{cid}' is already a client id of application '{other}'"


@dataclass(frozen=True, slots=True)
class KeyStrategy:
    """API keys in headers and/or query arguments (read like the top-level key settings)."""

    name: str
    key_names: tuple[str, ...]
    key_header_names: tuple[str, ...]
    key_in_header: bool
    key_in_query: bool
    hide_credentials: bool
    type: str = KEY_AUTH


@dataclass(frozen=True, slots=True)
class TokenStrategy:
    """OpenID Connect access tokens (JWT) from one issuer."""

    name: str
    issuer: str
    jwks_uri: str | None
    jwks: Any  # the inline JWKS (a map or JSON text), or None
    audience: tuple[str, ...]
    credential_claim: tuple[str, ...]
    scopes: tuple[str, ...]
    algorithms: frozenset[str]
    leeway: float
    type: str = OPENID_CONNECT


Strategy = KeyStrategy | TokenStrategy


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Strategies, who uses them, and which strategies can admit each operation."""

    strategies: Mapping[str, Strategy]  # DEFAULT first, then configuration order
    apis: Mapping[str, str]  # API name -> strategy name (NONE included)
    packages: Mapping[str, str]  # package name -> strategy name
    targets: Mapping[tuple[str, str], str]  # ("package"|"api", name) -> strategy name
    op_strategies: Mapping[int, tuple[str, ...]]  # op uid -> names; only where not (DEFAULT,)
    client_ids: Mapping[str, Application]

    @property
    def only_default(self) -> bool:
        """Whether every operation is the default key strategy's (today's behaviour)."""
        return not self.op_strategies


def compile_auth(config: Mapping[str, Any], catalog: Catalog) -> AuthConfig:
    """Validate the auth fields of a config whose catalog compiled; raise ConfigError."""
    strategies: dict[str, Strategy] = {DEFAULT: KeyStrategy(
        DEFAULT, catalog.key_names, catalog.key_header_names, catalog.key_in_header,
        catalog.key_in_query, catalog.hide_credentials)}
    for i, raw in enumerate(_list(config, "auth_strategies", "")):
        strategy = _compile_strategy(raw, f"auth_strategies[{i}]")
        if strategy.name in strategies:
            raise ConfigError(f"auth_strategies[{i}].name", DUPLICATE.format(name=strategy.name))
        strategies[strategy.name] = strategy

    def ref(raw: Any, place: str) -> str:
        if not isinstance(raw, Mapping) or raw.get("auth_strategy") is None:
            return DEFAULT
        name = _opt_str(raw, "auth_strategy", place)
        if name != NONE and name not in strategies:
            known = ", ".join([NONE, *strategies])
            raise ConfigError(f"{place}.auth_strategy", UNKNOWN.format(name=name, known=known))
        return name  # type: ignore[return-value]

    raw_apis, raw_packages = _list(config, "apis", ""), _list(config, "packages", "")
    apis = {name: ref(raw, f"apis[{i}]")
            for i, (name, raw) in enumerate(zip(catalog.apis, raw_apis, strict=True))}
    explicit = {raw["name"] for raw in raw_apis
                if isinstance(raw, Mapping) and raw.get("auth_strategy") is not None}
    packages = {name: ref(raw, f"packages[{i}]")
                for i, (name, raw) in enumerate(zip(catalog.packages, raw_packages,
                                                    strict=True))}
    targets = {**{("api", n): s for n, s in apis.items()},
               **{("package", n): s for n, s in packages.items()}}
    client_ids = _client_ids(config, catalog)
    api_registered = {r.target for app in catalog.applications.values()
                      for r in app.registrations if r.kind == "api"}
    op_strategies = _op_strategies(catalog, apis, packages, explicit | api_registered)
    return AuthConfig(strategies, apis, packages, targets, op_strategies, client_ids)


def _op_strategies(catalog: Catalog, apis: Mapping[str, str], packages: Mapping[str, str],
                   api_counts: set[str]) -> dict[int, tuple[str, ...]]:
    # An operation can be admitted by the strategy of every package that holds it, and by its
    # API's own strategy when that is set explicitly, when some application registers to the
    # API itself, or when no package holds the operation (docs/decisions.md "Auth strategies").
    by_op: dict[int, list[str]] = {}
    for name, pkg in catalog.packages.items():
        for uid in pkg.op_uids:
            names = by_op.setdefault(uid, [])
            if packages[name] not in names:
                names.append(packages[name])
    interned: dict[tuple[str, ...], tuple[str, ...]] = {}
    out: dict[int, tuple[str, ...]] = {}
    for api in catalog.apis.values():
        for op in api.operations:
            names = list(by_op.get(op.uid, ()))
            if (api.name in api_counts or not names) and apis[api.name] not in names:
                names.append(apis[api.name])
            key = tuple(names)
            if key != (DEFAULT,):
                out[op.uid] = interned.setdefault(key, key)
    return out


def _client_ids(config: Mapping[str, Any], catalog: Catalog) -> dict[str, Application]:
    out: dict[str, Application] = {}
    for i, raw in enumerate(_list(config, "applications", "")):
        place = f"applications[{i}]"
        if not isinstance(raw, Mapping):
            continue
        app = catalog.applications[raw["id"]]
        for j, cid in enumerate(_str_list(raw, "client_ids", place, [])):
            if cid in out:
                raise ConfigError(f"{place}.client_ids[{j}]",
                                  DUPLICATE_CLIENT.format(cid=cid, other=out[cid].id))
            out[cid] = app
    return out


def _compile_strategy(raw: Any, place: str) -> Strategy:
    raw = _as_record(raw, place, STRATEGY_FIELDS)
    name = _req_str(raw, "name", place)
    if name in RESERVED:
        raise ConfigError(f"{place}.name", RESERVED_NAME.format(name=name, default=DEFAULT,
                                                                none=NONE))
    kind = raw.get("type")
    if kind not in TYPES:
        what = "is required" if kind is None else f"'{kind}' is not"
        raise ConfigError(f"{place}.type", f"{what} one of {', '.join(TYPES)}")
    other = TOKEN_FIELDS if kind == KEY_AUTH else KEY_FIELDS
    for key in other:
        if raw.get(key) is not None:
            need = OPENID_CONNECT if kind == KEY_AUTH else KEY_AUTH
            raise ConfigError(f"{place}.{key}", WRONG_TYPE_FIELD.format(type=need))
    if kind == KEY_AUTH:
        names = tuple(_str_list(raw, "key_names", place, ["apikey"]))
        if not names:
            raise ConfigError(f"{place}.key_names",
                              "must name at least one header or query parameter")
        return KeyStrategy(name, names, tuple(n.lower() for n in names),
                           _bool(raw, "key_in_header", place, True),
                           _bool(raw, "key_in_query", place, True),
                           _bool(raw, "hide_credentials", place, False))
    issuer = _url(raw, "issuer", place, required=True)
    jwks_uri = _url(raw, "jwks_uri", place, required=False)
    jwks = raw.get("jwks")
    if jwks is not None:
        if jwks_uri is not None:
            raise ConfigError(f"{place}.jwks", JWKS_AND_URI)
        try:
            parse_jwks(jwks)
        except JwksError as exc:
            raise ConfigError(f"{place}.jwks", BAD_JWKS.format(error=exc)) from None
    audience = raw.get("audience")
    auds = [audience] if isinstance(audience, str) and audience else \
        _str_list(raw, "audience", place, [])
    algs = _str_list(raw, "algorithms", place, list(DEFAULT_ALGORITHMS))
    for j, alg in enumerate(algs):
        if alg not in ALGORITHMS:
            raise ConfigError(f"{place}.algorithms[{j}]",
                              BAD_ALG.format(alg=alg, allowed=", ".join(ALGORITHMS)))
    if not algs:
        raise ConfigError(f"{place}.algorithms", "must allow at least one algorithm")
    claims = _str_list(raw, "credential_claim", place, list(DEFAULT_CLAIMS))
    if not claims:
        raise ConfigError(f"{place}.credential_claim", "must name at least one claim")
    leeway = raw.get("leeway")
    if leeway is None:
        leeway = DEFAULT_LEEWAY
    if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or not \
            0 <= leeway <= MAX_LEEWAY:
        raise ConfigError(f"{place}.leeway", BAD_LEEWAY)
    return TokenStrategy(name, issuer, jwks_uri, jwks, tuple(auds), tuple(claims),
                         tuple(_str_list(raw, "scopes", place, [])), frozenset(algs),
                         float(leeway))


def _url(raw: Mapping[str, Any], key: str, place: str, *, required: bool) -> str | None:
    value = _req_str(raw, key, place) if required else _opt_str(raw, key, place)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{place}.{key}", BAD_URL)
    return value
