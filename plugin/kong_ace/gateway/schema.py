"""The plugin's config schema in Kong's schema DSL (what `--dump` reports and Kong validates)."""

from __future__ import annotations

from typing import Any

Field = dict[str, Any]

DURATIONS = ["second", "seconds", "minute", "minutes", "hour", "hours", "day", "days"]
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]


def _string(**extra: Any) -> Field:
    return {"type": "string", **extra}


def _array(elements: Field, **extra: Any) -> Field:
    return {"type": "array", "elements": elements, **extra}


ENFORCEMENT = ("enforce: ACE answers what it denies; monitor: it lets the request through and "
               "records the would-be outcome")


def _enforcement(scope: str) -> Field:
    return _string(one_of=["enforce", "monitor"],
                   description=f"{ENFORCEMENT} ({scope}; unset: inherited).")


def _record(*fields: tuple[str, Field], **extra: Any) -> Field:
    return {"type": "record", "fields": [{name: spec} for name, spec in fields], **extra}


RATE_LIMITS = _array(
    _record(
        ("limit", {"type": "integer", "required": True, "between": [0, 2**31 - 1]}),
        ("duration", _string(required=True, one_of=DURATIONS)),
    )
)

API = _record(
    ("name", _string(required=True)),
    ("version", _string()),
    ("spec_file", _string()),
    ("spec", _string()),
    ("base_path", _string()),
    ("service", _string()),
    ("hosts", _array(_string())),
    (
        "operations",
        _array(
            _record(
                ("method", _string(required=True, one_of=HTTP_METHODS)),
                ("path", _string(required=True, starts_with="/")),
                ("operation_id", _string()),
            )
        ),
    ),
    ("rate_limits", RATE_LIMITS),
    ("auth_strategy", _string()),
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
)

PACKAGE = _record(
    ("name", _string(required=True)),
    ("description", _string()),
    ("rate_limits", RATE_LIMITS),
    (
        "operations",
        _array(
            _record(
                ("api", _string(required=True)),
                ("method", _string(one_of=HTTP_METHODS)),
                ("path", _string(starts_with="/")),
                ("operation_id", _string()),
                ("rate_limits", RATE_LIMITS),
            )
        ),
    ),
    ("auth_strategy", _string()),
    ("enforcement", _enforcement("this package's operations, beating their API's setting")),
)

APPLICATION = _record(
    ("id", _string(required=True)),
    ("name", _string()),
    ("consumer", _string()),
    (
        "credentials",
        _array(
            _record(
                ("key_hash", _string(required=True, starts_with="sha256:")),
                ("status", _string(required=True, default="active", one_of=["active", "revoked"])),
                # Kong's DSL has no union type: an ISO 8601 time (epoch seconds work in the core
                # only when the config does not pass through Kong's validation).
                ("expires_at", _string()),
            )
        ),
    ),
    (
        "registrations",
        _array(
            _record(
                ("package", _string()),
                ("api", _string()),
                (
                    "status",
                    _string(required=True, one_of=["approved", "pending", "rejected", "revoked"]),
                ),
            )
        ),
    ),
    ("client_ids", _array(_string())),
)

# SPEC §11. One record for both types; the core applies each type's defaults and rejects the
# other type's fields, so nothing here has a default (Kong would fill it into both types).
AUTH_STRATEGY = _record(
    ("name", _string(required=True)),
    ("type", _string(required=True, one_of=["key_auth", "openid_connect"])),
    ("key_names", _array(_string(), len_min=1)),
    ("key_in_header", {"type": "boolean"}),
    ("key_in_query", {"type": "boolean"}),
    ("hide_credentials", {"type": "boolean"}),
    ("issuer", _string()),
    ("jwks_uri", _string()),
    ("jwks", _string()),  # the JWKS as JSON text (air-gapped gateways)
    ("audience", _array(_string())),
    ("credential_claim", _array(_string(), len_min=1)),
    ("scopes", _array(_string())),
    ("algorithms", _array(_string(one_of=["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                          "ES256", "ES384", "ES512", "EdDSA"]), len_min=1)),
    ("leeway", {"type": "number", "between": [0, 3600]}),
)

REDIS = _record(
    ("host", _string()),
    ("port", {"type": "integer", "default": 6379, "between": [0, 65535]}),
    ("database", {"type": "integer", "default": 0}),
    ("username", _string(referenceable=True)),
    ("password", _string(referenceable=True, encrypted=True)),
    ("ssl", {"type": "boolean", "default": False}),
    ("ssl_verify", {"type": "boolean", "default": False}),
    ("server_name", _string()),
    ("timeout", {"type": "integer", "default": 2000, "between": [0, 2**31 - 1]}),
    # Kong ACE's fields. The three timeouts have no default here on purpose: unset, each takes
    # `timeout` (itself 2000 ms by default), so an older config's `timeout` keeps working.
    ("connect_timeout", {"type": "integer", "between": [0, 2**31 - 2]}),
    ("send_timeout", {"type": "integer", "between": [0, 2**31 - 2]}),
    ("read_timeout", {"type": "integer", "between": [0, 2**31 - 2]}),
    ("keepalive_pool_size", {"type": "integer", "default": 256, "between": [1, 2**31 - 2]}),
    (
        "cluster_nodes",
        _array(
            _record(
                ("ip", _string(required=True, default="127.0.0.1")),
                ("port", {"type": "integer", "default": 6379, "between": [0, 65535]}),
            ),
            len_min=1,
        ),
    ),
    ("cluster_max_redirections", {"type": "integer", "default": 5}),
    ("sentinel_master", _string()),
    (
        "sentinel_nodes",
        _array(
            _record(
                ("host", _string(required=True, default="127.0.0.1")),
                ("port", {"type": "integer", "default": 6379, "between": [0, 65535]}),
            ),
            len_min=1,
        ),
    ),
    ("sentinel_role", _string(default="master", one_of=["master", "slave", "any"])),
    ("sentinel_username", _string(referenceable=True)),
    ("sentinel_password", _string(referenceable=True, encrypted=True)),
)

RATE_LIMITING = _record(
    ("sync_rate", {"type": "number"}),
    ("redis", REDIS),
    ("fault_tolerant", {"type": "boolean", "required": True, "default": True}),
    ("hide_client_headers", {"type": "boolean", "required": True, "default": False}),
    ("window_type", _string(required=True, default="sliding", one_of=["fixed", "sliding"])),
    ("headers", _string(required=True, default="kong", one_of=["kong", "ietf", "both"])),
    required=True,
)

# The fields of the plugin's `config` record, in kong-pdk's `Schema` shape (list of 1-key maps).
CONFIG_FIELDS: tuple[Field, ...] = (
    {"match_policy": _string(required=True, default="if_present",
                             one_of=["if_present", "required"])},
    {"anonymous": _string()},
    {"key_names": _array(_string(), required=True, default=["apikey"], len_min=1)},
    {"key_in_header": {"type": "boolean", "required": True, "default": True}},
    {"key_in_query": {"type": "boolean", "required": True, "default": True}},
    {"hide_credentials": {"type": "boolean", "required": True, "default": False}},
    {"specs_dir": _string()},
    {"apis": _array(API, required=True, default=[])},
    {"packages": _array(PACKAGE, required=True, default=[])},
    {"applications": _array(APPLICATION, required=True, default=[])},
    {"rate_limiting": RATE_LIMITING},
    {"companions": _string(required=True, default="optional", one_of=["optional", "required"])},
    {"auth_strategies": _array(AUTH_STRATEGY)},

    # Request confusion (SPEC §8; README "Reliability and security").
    {"path_with_escaped_slashes_action": _string(required=True, default="reject",
                                                 one_of=["reject", "unescape", "keep"])},
    {"method_override_action": _string(required=True, default="strip",
                                       one_of=["strip", "reject", "follow"])},
    # Classic mode: kong.log.set_serialize_value("ace", summary), one more PDK call a request.
    {"log_summary": {"type": "boolean", "required": True, "default": False}},
    # Monitor mode (docs/operations.md).
    {"enforcement": _string(required=True, default="enforce", one_of=["enforce", "monitor"],
                            description=f"{ENFORCEMENT} (top level; apis[] and packages[] "
                            "may override it).")},
    {"monitor_request_confusion": {"type": "boolean", "required": True, "default": False,
                                   "description": "Monitor request-confusion refusals (400) "
                                   "too when enforcement is monitor; off: they stay enforced."}},
    {"monitor_header": {"type": "boolean", "required": True, "default": False,
                        "description": "Send X-ACE-Would-Deny: <status> <reason> upstream on a "
                        "request monitor mode lets through."}},
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
