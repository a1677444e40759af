"""The reason of a decision: a small fixed vocabulary read back from (status, message).

The core words its denials as Kong's plugins do (core/decision.py); the reason names them for
log summaries, metric labels, the monitor-mode upstream header and ``kong-ace replay``. It is a
fixed set, so labels stay bounded whatever clients send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kong_ace.core import decision as d
from kong_ace.core import target as t

ALLOWED = "allowed"  # an application was admitted
PASS_THROUGH = "pass_through"  # no operation matched and match_policy is if_present
NO_APPLICATION = "no_application"  # matched, admitted without an ACE application (anonymous)
OTHER = "other"  # a denial this version cannot name

REASONS: dict[tuple[int, str], str] = {
    # Request confusion (core/target.py): refused before matching, or when forwarding.
    (400, t.FRAGMENT): "fragment",
    (400, t.ESCAPED_SLASH): "escaped_slash",
    (400, t.PATH_PARAMETERS): "path_parameters",
    (400, t.AMBIGUOUS_PATH): "ambiguous_path",
    (400, t.HOST_MISMATCH): "host_mismatch",
    (400, t.METHOD_OVERRIDE): "method_override",
    (400, t.BODY_OVERRIDE): "body_method_override",
    (400, t.UNINSPECTED_BODY): "uninspected_body",
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
    (410, d.SUNSET): "sunset",
    (429, d.RATE_LIMITED): "limited",
    # The only 500 the core decides: the rate-limit store failed and fault_tolerant is false.
    (500, d.UNEXPECTED): "store_unavailable",
}
# RFC 6750 error codes a Bearer challenge may carry: names for token denials added later.
BEARER_ERRORS = ("invalid_request", "invalid_token", "insufficient_scope")
NO_TOKEN = "no_token"


def reason(decision: d.Decision) -> str:
    """The reason of ``decision``, one of a fixed set of names (a would-deny: its denial's)."""
    if decision.allowed:
        if decision.application_id is not None:
            return ALLOWED
        return PASS_THROUGH if decision.operation_id is None else NO_APPLICATION
    return denial_reason(decision.status, decision.message, decision.headers)


def denial_reason(status: int | None, message: str | None, headers: Mapping[str, Any]) -> str:
    """The reason of a denial with this status, message and headers."""
    found = REASONS.get((status, message))  # type: ignore[arg-type]
    return found if found is not None else _unnamed(headers)


def _unnamed(headers: Mapping[str, Any]) -> str:
    # Denials added after this table (token strategies) name themselves in their challenge.
    challenge = _header(headers, "www-authenticate")
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
