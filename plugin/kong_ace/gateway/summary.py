"""What one decision was, in words: the summary Kong's logging plugins record.

The reasons themselves are the core's vocabulary (core/reasons.py), read back from (status,
message), so the core's Decision stays as it is.
"""

from __future__ import annotations

import weakref
from typing import Any

from kong_ace.core.decision import Decision
from kong_ace.core.reasons import (  # noqa: F401 - the vocabulary, re-exported for the edge
    ALLOWED,
    BEARER_ERRORS,
    NO_APPLICATION,
    NO_TOKEN,
    OTHER,
    PASS_THROUGH,
    REASONS,
    reason,
)

INTERNAL_ERROR = "internal_error"  # the plugin failed; Kong answers 500
CONSUMER_NOT_FOUND = "consumer_not_found"  # a mapped consumer Kong does not know: 500
CONFIG_REJECTED = "config_rejected"  # ACE rejected the config and has no good one: 500
COMPANIONS_MISSING = "companions_missing"  # companions: required, and ace-context did not run

SUMMARY_KEY = "ace"  # kong.log.set_serialize_value("ace", summary): Kong's log records' key
# Outcomes in the summary, as the companions' verdicts word them (gateway/companion.py).
OUTCOME_ALLOWED = "allowed"
OUTCOME_PASSED = "passed"  # no operation matched and the policy let it through
OUTCOME_DENIED = "denied"
OUTCOME_WOULD_DENY = "would_deny"  # monitor mode: let through, would have been denied


def exit_reason(status: int, message: str | None) -> str:
    """The reason of an admitted request the edge answered itself (the plugin's own exit)."""
    if status == 500:
        return CONSUMER_NOT_FOUND  # the one 500 apply() answers: Kong lacks the consumer
    found = REASONS.get((status, message)) if message is not None else None
    return found if found is not None else OTHER


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
    would = decision.would_deny
    if why is not None:
        out: dict[str, Any] = {"outcome": OUTCOME_DENIED, "status": 500, "reason": why}
    elif would is not None:
        # Monitor mode: proxied, but what enforcement would have answered is what matters.
        out = {"outcome": OUTCOME_WOULD_DENY, "status": would.status or 500,
               "reason": reason(would)}
        decision = would
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
