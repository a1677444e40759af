"""The plugin's config schema in Kong's schema DSL (what `--dump` reports and Kong validates)."""

from __future__ import annotations

from typing import Any

Field = dict[str, Any]

DURATIONS = ["second", "seconds", "minute", "minutes", "hour", "hours", "day", "days"]
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]


def _string(**extra: Any) -> Field:
    return {"type": "string", **extra}


def _flag(default: bool, description: str) -> Field:
    """A boolean Kong always fills (required, with its default)."""
    return {"type": "boolean", "required": True, "default": default, "description": description}


def _array(elements: Field, **extra: Any) -> Field:
    return {"type": "array", "elements": elements, **extra}


ENFORCEMENT = ("enforce: ACE answers what it denies; monitor: it lets the request through and "
               "records the would-be outcome")


def _enforcement(scope: str) -> Field:
    return _string(one_of=["enforce", "monitor"],
                   description=f"{ENFORCEMENT} ({scope}; unset: inherited).")


def _record(*fields: tuple[str, Field], **extra: Any) -> Field:
    return {"type": "record", "fields": [{name: spec} for name, spec in fields], **extra}


def _limits(whose: str) -> Field:
    return _array(
        _record(
            ("limit", {"type": "integer", "required": True, "between": [0, 2**31 - 1],
                       "description": "How many requests the window admits."}),
            ("duration", _string(required=True, one_of=DURATIONS,
                                 description="The window: a second, minute, hour or day "
                                 "(singular or plural).")),
        ),
        description=f"{whose} All must hold; at most one limit per duration.",
    )


RATE_LIMITS = _limits("Rate limits.")

API = _record(
    ("name", _string(required=True, description="The API's name, unique; packages and "
                     "registrations refer to it.")),
    ("version", _string(description="Informational: the API's version.")),
    ("spec_file", _string(description="Path of an OpenAPI 3.0/3.1 document (YAML or JSON), "
                          "relative to specs_dir. Exactly one of spec_file, spec, operations.")),
    ("spec", _string(description="The OpenAPI 3.0/3.1 document inline, as a string. Exactly "
                     "one of spec_file, spec, operations.")),
    ("base_path", _string(description="The path prefix of every operation; default: the path "
                          "of the spec's first servers[].url.")),
    ("service", _string(description="A Kong service (name or id): the API only matches "
                        "requests routed to it. One more PDK call per request in classic "
                        "mode.")),
    ("hosts", _array(_string(), description="Hosts (exact, or a leading *. wildcard): the API "
                     "only matches requests whose Host header is one of them.")),
    (
        "operations",
        _array(
            _record(
                ("method", _string(required=True, one_of=HTTP_METHODS,
                                   description="The operation's HTTP method.")),
                ("path", _string(required=True, starts_with="/",
                                 description="The path template, {param} for a parameter, "
                                 "without the base path.")),
                ("operation_id", _string(description="The operation's id; default: "
                                         "\"<METHOD> <path>\".")),
            ),
            description="A hand-written list of operations, for an API without a spec. "
            "Exactly one of spec_file, spec, operations.",
        ),
    ),
    ("rate_limits", _limits("The limits of {api: NAME} registrations to this API.")),
    ("auth_strategy", _string(description="The strategy that admits {api: NAME} registrations: "
                              "a name from auth_strategies, default (the top-level key "
                              "settings; the default) or none (open).")),
    ("path_case", _string(
        required=True, default="unknown", one_of=["unknown", "sensitive", "insensitive"],
        description="How the API's upstream routes paths: sensitive (case matters), "
                    "insensitive (Express, ASP.NET Core: decide on the lower-cased path) or "
                    "unknown (a path whose case-folded reading reaches another operation is "
                    "answered 400).")),
    ("enforcement", _enforcement("this API's operations; a package's setting wins")),
    # Kong's DSL has no union type: "true", "false" or a date (ISO 8601, or epoch seconds).
    ("deprecated", _string(description="Deprecation of this API version: \"true\" or the date "
                           "it is (or will be) deprecated; responses carry the RFC 9745 "
                           "Deprecation header.")),
    ("sunset", _string(description="The date (ISO 8601) this API version goes away; responses "
                       "carry the RFC 8594 Sunset header.")),
    ("deprecation_link", _string(description="A page about the deprecation, sent as Link: <URI>; "
                                 "rel=\"deprecation\" (needs deprecated).")),
    ("sunset_action", _string(one_of=["warn", "refuse"],
                              description="After the sunset date: warn (headers only, the "
                              "default) or refuse (410 Gone).")),
    description="An API: its operations, from an OpenAPI document or a list.",
)

PACKAGE = _record(
    ("name", _string(required=True, description="The package's name, unique; registrations "
                     "refer to it.")),
    ("description", _string(description="Informational: what the package offers.")),
    ("rate_limits", _limits("The package's limits, shared by its operations that have no "
                            "limits of their own.")),
    (
        "operations",
        _array(
            _record(
                ("api", _string(required=True, description="The API the operations come "
                                "from; alone, every operation of that API.")),
                ("method", _string(one_of=HTTP_METHODS, description="With path: one "
                                   "operation by method and path.")),
                ("path", _string(starts_with="/", description="With method: the operation's "
                                 "path as in the spec, with or without the base path.")),
                ("operation_id", _string(description="One operation by its id.")),
                ("rate_limits", _limits("Limits of their own, counted separately from the "
                                        "package's (per operation on an {api} entry).")),
            ),
            description="The operations in the package: {api}, {api, operation_id} or "
            "{api, method, path}.",
        ),
    ),
    ("auth_strategy", _string(description="The strategy that admits registrations to this "
                              "package: a name from auth_strategies, default (the top-level "
                              "key settings; the default) or none (open access).")),
    ("enforcement", _enforcement("this package's operations, beating their API's setting")),
    description="An API package: operations and rate limits that applications register to.",
)

APPLICATION = _record(
    ("id", _string(required=True, description="The application's id, unique; sent upstream "
                   "as X-ACE-Application-ID.")),
    ("name", _string(description="Informational: a readable name.")),
    ("consumer", _string(description="A Kong consumer (id or username) this application maps "
                         "to, both ways. One application per consumer.")),
    (
        "credentials",
        _array(
            _record(
                ("key_hash", _string(required=True, starts_with="sha256:",
                                     description="sha256:<hex> of an API key (kong-ace keygen "
                                     "or hash-key); plain keys are never stored.")),
                ("status", _string(required=True, default="active", one_of=["active", "revoked"],
                                   description="A revoked key is answered 401 API key "
                                   "revoked.")),
                # Kong's DSL has no union type: an ISO 8601 time, or epoch seconds as a string.
                ("expires_at", _string(description="When the key expires: an ISO 8601 time, or "
                                       "epoch seconds (quoted). After it: 401 API key "
                                       "expired.")),
            ),
            description="The application's API keys, as hashes. A key belongs to one "
            "application only.",
        ),
    ),
    (
        "registrations",
        _array(
            _record(
                ("package", _string(description="The package registered to (or api).")),
                ("api", _string(description="The API registered to, with the API's "
                                "rate_limits (or package).")),
                (
                    "status",
                    _string(required=True, one_of=["approved", "pending", "rejected", "revoked"],
                            description="Only approved grants access; the others are "
                            "answered 403 naming the status."),
                ),
            ),
            description="What the application may call: {package} or {api}, with a status.",
        ),
    ),
    ("client_ids", _array(_string(), description="OpenID Connect client ids: a verified "
                          "access token whose client-id claim holds one is this "
                          "application.")),
    description="An application: its credentials and registrations.",
)

# SPEC §11. One record for both types; the core applies each type's defaults and rejects the
# other type's fields, so nothing here has a default (Kong would fill it into both types).
KEY_AUTH_ONLY = "key_auth only; default as the top-level field"
AUTH_STRATEGY = _record(
    ("name", _string(required=True, description="The strategy's name, unique; default and "
                     "none are reserved.")),
    ("type", _string(required=True, one_of=["key_auth", "openid_connect"],
                     description="key_auth: API keys; openid_connect: bearer access tokens.")),
    ("key_names", _array(_string(), len_min=1, description="Header and query argument names "
                         f"that carry a key ({KEY_AUTH_ONLY}, [\"apikey\"]).")),
    ("key_in_header", {"type": "boolean", "description": "Look for keys in the headers "
                       f"({KEY_AUTH_ONLY}, true)."}),
    ("key_in_query", {"type": "boolean", "description": "Look for keys in the query string "
                      f"({KEY_AUTH_ONLY}, true)."}),
    ("hide_credentials", {"type": "boolean", "description": "Strip the key before proxying "
                          f"({KEY_AUTH_ONLY}, false)."}),
    ("issuer", _string(description="openid_connect, required: the iss the tokens must carry "
                       "(an http(s) URL).")),
    ("jwks_uri", _string(description="openid_connect: where the IdP publishes its signing "
                         "keys; default: discovery from <issuer>/.well-known/"
                         "openid-configuration.")),
    ("jwks", _string(description="openid_connect: the JWKS inline as JSON text, for air-gapped "
                     "gateways (no network, no refresh). Not with jwks_uri.")),
    ("audience", _array(_string(), description="openid_connect: the token's aud must contain "
                        "one of them; unset: not checked.")),
    ("credential_claim", _array(_string(), len_min=1, description="openid_connect: claims "
                                "tried in order for the client id; default [\"client_id\", "
                                "\"azp\"].")),
    ("scopes", _array(_string(), description="openid_connect: scopes the token must grant; a "
                      "shortfall is 403 insufficient_scope.")),
    ("algorithms", _array(_string(one_of=["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                          "ES256", "ES384", "ES512", "EdDSA"]), len_min=1,
                          description="openid_connect: allowed signature algorithms; default "
                          "[\"RS256\", \"ES256\"]. none and HS* are never accepted.")),
    ("leeway", {"type": "number", "between": [0, 3600], "description": "openid_connect: "
                "seconds of clock skew allowed on exp and nbf; default 30."}),
    description="A named auth strategy: where keys are read, or how access tokens are "
    "verified.",
)

REDIS = _record(
    ("host", _string(description="The Redis host (a single Redis; not with cluster_nodes or "
                     "sentinel_master).")),
    ("port", {"type": "integer", "default": 6379, "between": [0, 65535],
              "description": "The Redis port (a single Redis)."}),
    ("database", {"type": "integer", "default": 0, "description": "The Redis database number; "
                  "must be 0 with cluster_nodes."}),
    ("username", _string(referenceable=True, description="Redis 6 ACL user for the Redis "
                         "servers (Cluster nodes, Sentinel's primary).")),
    ("password", _string(referenceable=True, encrypted=True, description="Password for the "
                         "Redis servers; a {vault://...} reference is resolved by Kong.")),
    ("ssl", {"type": "boolean", "default": False, "description": "TLS to the Redis servers."}),
    ("ssl_verify", {"type": "boolean", "default": False, "description": "Verify the servers' "
                    "certificates against the system CA store (SSL_CERT_FILE to change it)."}),
    ("server_name", _string(description="The TLS SNI name, and the name verified (single "
                            "Redis only).")),
    ("timeout", {"type": "integer", "default": 2000, "between": [0, 2**31 - 1],
                 "description": "Milliseconds; Kong's older field: applies to each of "
                 "connect_timeout, send_timeout, read_timeout that is not set."}),
    # Kong ACE's fields. The three timeouts have no default here on purpose: unset, each takes
    # `timeout` (itself 2000 ms by default), so an older config's `timeout` keeps working.
    ("connect_timeout", {"type": "integer", "between": [0, 2**31 - 2],
                         "description": "Milliseconds to connect; unset: timeout."}),
    ("send_timeout", {"type": "integer", "between": [0, 2**31 - 2],
                      "description": "Milliseconds to send; unset: timeout. redis-py has one "
                      "socket timeout: the larger of send and read is used."}),
    ("read_timeout", {"type": "integer", "between": [0, 2**31 - 2],
                      "description": "Milliseconds to read; unset: timeout. redis-py has one "
                      "socket timeout: the larger of send and read is used."}),
    ("keepalive_pool_size", {"type": "integer", "default": 256, "between": [1, 2**31 - 2],
                             "description": "Connections kept per Redis server per "
                             "plugin-server process; when all are busy the call fails."}),
    (
        "cluster_nodes",
        _array(
            _record(
                ("ip", _string(required=True, default="127.0.0.1",
                               description="A Cluster node's address.")),
                ("port", {"type": "integer", "default": 6379, "between": [0, 65535],
                          "description": "A Cluster node's port."}),
            ),
            len_min=1,
            description="Set means Redis Cluster: seed nodes (one reachable is enough, the "
            "others are discovered).",
        ),
    ),
    ("cluster_max_redirections", {"type": "integer", "default": 5,
                                  "description": "MOVED/ASK redirections followed per "
                                  "request (Cluster)."}),
    ("sentinel_master", _string(description="Set means Sentinel: the name the sentinels "
                                "monitor.")),
    (
        "sentinel_nodes",
        _array(
            _record(
                ("host", _string(required=True, default="127.0.0.1",
                                 description="A sentinel's host.")),
                ("port", {"type": "integer", "default": 6379, "between": [0, 65535],
                          "description": "A sentinel's port."}),
            ),
            len_min=1,
            description="The sentinels; required with sentinel_master.",
        ),
    ),
    ("sentinel_role", _string(default="master", one_of=["master", "slave", "any"],
                              description="Accepted for Kong ACE compatibility; counting "
                              "always goes to the primary.")),
    ("sentinel_username", _string(referenceable=True, description="ACL user for the sentinels "
                                  "themselves.")),
    ("sentinel_password", _string(referenceable=True, encrypted=True,
                                  description="Password for the sentinels themselves.")),
    description="Where counters live with sync_rate set: a single Redis, a Cluster or "
    "Sentinel.",
)

RATE_LIMITING = _record(
    ("sync_rate", {"type": "number", "description": "Unset: counters in this node's memory. "
                   "0: in Redis, exact across nodes. > 0 (at least 0.02): local counters "
                   "synchronised with Redis every sync_rate seconds."}),
    ("redis", REDIS),
    ("fault_tolerant", _flag(True, "When Redis is unreachable (sync_rate 0): true admits "
                        "the request uncounted, false answers 500.")),
    ("hide_client_headers", _flag(False, "Send no rate-limit headers, Retry-After "
                             "included.")),
    ("window_type", _string(required=True, default="sliding", one_of=["fixed", "sliding"],
                            description="fixed: windows aligned to the clock; sliding: the "
                            "previous window weighted in.")),
    ("headers", _string(required=True, default="kong", one_of=["kong", "ietf", "both"],
                        description="kong: X-RateLimit-* and RateLimit-*; ietf: RateLimit-Policy "
                        "and RateLimit (draft -11); both.")),
    required=True,
    description="How limits are counted and announced.",
)

# The fields of the plugin's `config` record, in kong-pdk's `Schema` shape (list of 1-key maps).
CONFIG_FIELDS: tuple[Field, ...] = (
    {"match_policy": _string(required=True, default="if_present",
                             one_of=["if_present", "required"],
                             description="A request that matches no operation: if_present "
                             "passes it through, required answers 404 (405 when only the "
                             "method is wrong).")},
    {"anonymous": _string(description="A consumer (id or username) for requests without any "
                          "key; a wrong key is still 401.")},
    {"key_names": _array(_string(), required=True, default=["apikey"], len_min=1,
                         description="Header and query argument names that carry an API key "
                         "(the default strategy).")},
    {"key_in_header": _flag(True, "Look for keys in the headers (the default strategy).")},
    {"key_in_query": _flag(True, "Look for keys in the query string (the default "
                      "strategy).")},
    {"hide_credentials": _flag(False, "Strip the key (header and query argument) before "
                          "proxying (the default strategy).")},
    {"specs_dir": _string(description="Base directory of relative spec_file paths; default: "
                          "the plugin server's working directory.")},
    {"apis": _array(API, required=True, default=[], description="The registered APIs.")},
    {"packages": _array(PACKAGE, required=True, default=[], description="The API packages.")},
    {"applications": _array(APPLICATION, required=True, default=[],
                            description="The applications.")},
    {"rate_limiting": RATE_LIMITING},
    {"companions": _string(required=True, default="optional", one_of=["optional", "required"],
                           description="required: a request without ace-context's table is "
                           "answered 500; optional: classic mode then.")},
    {"auth_strategies": _array(AUTH_STRATEGY, description="Named auth strategies that packages "
                               "and APIs refer to (auth_strategy).")},

    # Request confusion (SPEC §8; docs/matching.md "Request confusion").
    {"path_with_escaped_slashes_action": _string(required=True, default="reject",
                                                 one_of=["reject", "unescape", "keep"],
                                                 description="%2F, %5C or a raw \\ in a path "
                                                 "under an API: reject (400), unescape (decide "
                                                 "on and forward the decoded path) or keep.")},
    {"method_override_action": _string(required=True, default="strip",
                                       one_of=["strip", "reject", "follow"],
                                       description="X-HTTP-Method-Override and kin, _method in "
                                       "the query (every spelling PHP reads as _method), under "
                                       "an API: strip, reject (400) or follow (on a POST).")},
    {"body_method_override_action": _string(
        required=True, default="reject", one_of=["reject", "follow"],
        description="A _method naming another method in the form or JSON body of a POST "
                    "under an API (Laravel honours it): reject answers 400, follow decides "
                    "on the method it names. A body cannot be stripped.")},
    {"uninspected_body_action": _string(
        required=True, default="reject_if_ambiguous",
        one_of=["reject_if_ambiguous", "reject", "allow"],
        description="A POST form or JSON body under an API that cannot be inspected for "
                    "_method (nginx spilled it to a file: larger than client_body_buffer_size): "
                    "reject_if_ambiguous answers 400 only where another method has an operation "
                    "at the same path, reject always, allow never.")},
    # Classic mode: kong.log.set_serialize_value("ace", summary), one more PDK call a request.
    {"log_summary": _flag(False, "Classic mode: hand Kong's logging plugins a summary of "
                     "each decision under ace (one more PDK call).")},
    # Monitor mode (docs/operations.md).
    {"enforcement": _string(required=True, default="enforce", one_of=["enforce", "monitor"],
                            description=f"{ENFORCEMENT} (top level; apis[] and packages[] "
                            "may override it).")},
    {"monitor_request_confusion": _flag(False, "Monitor request-confusion refusals (400) "
                                   "too when enforcement is monitor; off: they stay enforced.")},
    {"monitor_header": _flag(False, "Send X-ACE-Would-Deny: <status> <reason> upstream on a "
                        "request monitor mode lets through.")},
)


def config_record() -> Field:
    """The `config` field as Kong sees it: a record of CONFIG_FIELDS."""
    return {"type": "record", "fields": list(CONFIG_FIELDS)}


def empty_maps_to_lists(value: Any, schema: Field) -> Any:
    """Turn `{}` into `[]` where the schema wants an array.

    Lua cannot tell an empty array from an empty map; cjson may encode either as `{}`.
    """
    kind = schema.get("type")
    if kind in ("array", "set"):
        if isinstance(value, dict) and not value:
            return []
        if isinstance(value, list):
            return [empty_maps_to_lists(v, schema["elements"]) for v in value]
    elif kind == "record" and isinstance(value, dict):
        out = dict(value)
        for entry in schema["fields"]:
            ((name, sub),) = entry.items()
            if name in out and out[name] is not None:
                out[name] = empty_maps_to_lists(out[name], sub)
        return out
    return value
