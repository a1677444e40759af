"""What one decision was, in words: its reason and the summary Kong's logging plugins record.

The core words its denials as Kong's plugins do (core/decision.py); the reason is read back from
(status, message) here, at the edge, so the core's Decision stays as it is.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from kong_ace.core import decision as d
from kong_ace.core import target as t
from kong_ace.core.decision import Decision

# Reasons: a small fixed vocabulary, so metric labels stay bounded whatever clients send.
ALLOWED = "allowed"  # an application was admitted
PASS_THROUGH = "pass_through"  # no operation matched and match_policy is if_present
NO_APPLICATION = "no_application"  # matched, admitted without an ACE application (anonymous)
INTERNAL_ERROR = "internal_error"  # the plugin failed; Kong answers 500
CONSUMER_NOT_FOUND = "consumer_not_found"  # a mapped consumer Kong does not know: 500
CONFIG_REJECTED = "config_rejected"  # ACE rejected the config and has no good one: 500
COMPANIONS_MISSING = "companions_missing"  # companions: required, and ace-context did not run
OTHER = "other"  # a denial this version cannot name

REASONS: dict[tuple[int, str], str] = {
    # Request confusion (core/target.py): refused before matching, or when forwarding.
    (400, t.FRAGMENT): "fragment",
    (400, t.ESCAPED_SLASH): "escaped_slash",
    (400, t.PATH_PARAMETERS): "path_parameters",
    (400, t.AMBIGUOUS_PATH): "ambiguous_path",
    (400, t.HOST_MISMATCH): "host_mismatch",
    (400, t.METHOD_OVERRIDE): "method_override",
    (400, t.TOO_MANY_HEADERS): "too_many_headers",
    (404, d.NO_OPERATION): "no_operation",
    (405, d.METHOD_NOT_ALLOWED): "method_not_allowed",
    (401, d.NO_API_KEY): "no_key",
    (401, d.UNAUTHORIZED): "unknown_key",
    (401, d.KEY_REVOKED): "revoked",
    (401, d.KEY_EXPIRED): "expired",
    (401, d.DUPLICATE_KEY): "duplicate_key",
    (403, d.NOT_REGISTERED): "not_registered",
    (403, d.REGISTRATION_MESSAGES["pending"]): "pending",
    (403, d.REGISTRATION_MESSAGES["rejected"]): "rejected",
    (403, d.REGISTRATION_MESSAGES["revoked"]): "registration_revoked",
    (401, d.NO_TOKEN): "no_token",
    (401, d.NO_CREDENTIAL): "no_credential",
    (401, d.INVALID_TOKEN): "invalid_token",
    (401, d.TOKEN_REQUIRED): "token_required",
    (403, d.INSUFFICIENT_SCOPE): "insufficient_scope",
    (429, d.RATE_LIMITED): "limited",
    # The only 500 the core decides: the rate-limit store failed and fault_tolerant is false.
    (500, d.UNEXPECTED): "store_unavailable",
}
# RFC 6750 error codes a Bearer challenge may carry: names for token denials added later.
BEARER_ERRORS = ("invalid_request", "invalid_token", "insufficient_scope")
NO_TOKEN = "no_token"

SUMMARY_KEY = "ace"  # kong.log.set_serialize_value("ace", summary): Kong's log records' key
# Outcomes in the summary, as the companions' verdicts word them (gateway/companion.py).
OUTCOME_ALLOWED = "allowed"
OUTCOME_PASSED = "passed"  # no operation matched and the policy let it through
OUTCOME_DENIED = "denied"


def reason(decision: Decision) -> str:
    """The reason of ``decision``, one of a fixed set of names."""
    if decision.allowed:
        if decision.application_id is not None:
            return ALLOWED
        return PASS_THROUGH if decision.operation_id is None else NO_APPLICATION
    found = REASONS.get((decision.status, decision.message))  # type: ignore[arg-type]
    return found if found is not None else _unnamed(decision)


def exit_reason(status: int, message: str | None) -> str:
    """The reason of an admitted request the edge answered itself (the plugin's own exit)."""
    if status == 500:
        return CONSUMER_NOT_FOUND  # the one 500 apply() answers: Kong lacks the consumer
    found = REASONS.get((status, message)) if message is not None else None
    return found if found is not None else OTHER


def _unnamed(decision: Decision) -> str:
    # Denials added after this table (token strategies) name themselves in their challenge.
    challenge = _header(decision.headers, "www-authenticate")
    if isinstance(challenge, str) and challenge.lower().startswith("bearer"):
        for code in BEARER_ERRORS:
            if f'error="{code}"' in challenge:
                return code
        return NO_TOKEN
    return OTHER


def _header(headers: Mapping[str, Any], name: str) -> Any:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


# Enforcer -> {operation id: API name}, built on first use: denials carry only the operation id.
_APIS: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def api_of(enforcer: Any, decision: Decision) -> str | None:
    """The API of the decision's operation (the first API with that id, if ids repeat)."""
    if decision.api is not None or decision.operation_id is None:
        return decision.api
    apis = _APIS.get(enforcer)
    if apis is None:
        apis = {}
        for op in enforcer.catalog.operations():
            apis.setdefault(op.id, op.api)
        _APIS[enforcer] = apis
    return apis.get(decision.operation_id)


def remaining(decision: Decision) -> int | None:
    """The quota left in the most restrictive window, when the decision counted one."""
    value = decision.headers.get("RateLimit-Remaining") if decision.headers else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def summary(decision: Decision, api: str | None = None, *,
            why: str | None = None) -> dict[str, Any]:
    """The log summary of one decision; keys without a value are left out (Lua drops nils).

    The companions' summary (gateway/companion.py) plus ``reason``, and the API of a denied
    operation when ``api`` names it. ``why``: a reason the edge found instead of the decision's
    own (an internal error, a missing consumer): then the request was answered 500.
    """
    if why is not None:
        out: dict[str, Any] = {"outcome": OUTCOME_DENIED, "status": 500, "reason": why}
    elif decision.allowed:
        out = {"outcome": OUTCOME_PASSED if decision.operation_id is None else OUTCOME_ALLOWED,
               "reason": reason(decision)}
    else:
        out = {"outcome": OUTCOME_DENIED, "status": decision.status or 500,
               "reason": reason(decision)}
    for key, value in (("operation", decision.operation_id),
                       ("application", decision.application_id),
                       ("package", decision.package),
                       ("api", decision.api or api),
                       ("remaining", remaining(decision))):
        if value is not None:
            out[key] = value
    return out
