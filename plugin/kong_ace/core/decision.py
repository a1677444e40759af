"""The request view the core reads and the decision value it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Messages as Kong's own plugins word them (SPEC §4).
NO_OPERATION = "no API operation matches this request"
METHOD_NOT_ALLOWED = "method not allowed"
NO_API_KEY = "No API key found in request"
UNAUTHORIZED = "Unauthorized"
KEY_REVOKED = "API key revoked"
KEY_EXPIRED = "API key expired"
DUPLICATE_KEY = "Duplicate API key found"
NOT_REGISTERED = "application is not registered for this operation"
REGISTRATION_MESSAGES = {
    "pending": "registration pending approval",
    "rejected": "registration rejected",
    "revoked": "registration revoked",
}
RATE_LIMITED = "API rate limit exceeded"
UNEXPECTED = "An unexpected error occurred"
SUNSET = "this API version has been retired"  # 410 after apis[].sunset with sunset_action: refuse

KEY_CHALLENGE = {"WWW-Authenticate": 'Key realm="kong"'}

# Auth strategies (SPEC §11): bearer-token answers follow RFC 6750 §3; a refused token gets no
# detail beyond `invalid_token` (the reason goes to `kong-ace explain` and debug logs only).
NO_TOKEN = "No access token found in request"
NO_CREDENTIAL = "No API key or access token found in request"
INVALID_TOKEN = "Invalid or expired access token"
INSUFFICIENT_SCOPE = "Insufficient scope"
TOKEN_REQUIRED = "An access token is required for this operation"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kong"'}
INVALID_TOKEN_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kong", error="invalid_token"'}
EITHER_CHALLENGE = {"WWW-Authenticate": 'Key realm="kong", Bearer realm="kong"'}

HEADER_OPERATION = "X-ACE-Operation-ID"
HEADER_APPLICATION = "X-ACE-Application-ID"
HEADER_PACKAGE = "X-ACE-Package"
HEADER_API = "X-ACE-API"
IDENTITY_HEADERS = (HEADER_OPERATION, HEADER_APPLICATION, HEADER_PACKAGE, HEADER_API)
IDENTITY_HEADERS_LOWER = tuple(h.lower() for h in IDENTITY_HEADERS)
# Monitor mode (monitor_header: true): "<status> <reason>" of a request ACE would have denied.
# Under X-ACE-, so every client spelling of it is cleared like the identity headers.
HEADER_WOULD_DENY = "X-ACE-Would-Deny"



@dataclass(slots=True)
class Request:
    """What the core needs to know about a request; maps may be Kong multi-maps."""

    method: str
    path: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    host: str | None = None  # the Host header, as Kong's router matches it
    service: Any = None
    consumer: Any = None
    target: str | None = None  # the raw request target (path and query) as the client sent it
    authority: str | None = None  # the host of an absolute-form request line, if any
    credential: bool | None = None  # a credential authenticated ``consumer`` (None: not known)
    headers_truncated: bool = False  # Kong read only the first N headers
    normalized: bool = False  # ``path`` is Kong's normalised path already (never normalise twice)
    body: str | bytes | None = None  # a POST's form/JSON body, when read (None: not read)
    body_spilled: bool = False  # the body was too large to inspect (nginx spilled it to a file)


@dataclass(slots=True)
class Decision:
    """The outcome for one request: proxy it (with headers to set) or answer it.

    Treat it as immutable; it is not frozen because a frozen dataclass costs ~2 us to build.
    """

    # Field order matters: Enforcer._authorize builds admitted decisions positionally.

    allowed: bool
    status: int | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    upstream_headers: Mapping[str, str] = field(default_factory=dict)
    clear_upstream_headers: tuple[str, ...] = ()
    clear_query: tuple[str, ...] = ()
    operation_id: str | None = None
    application_id: str | None = None
    package: str | None = None
    api: str | None = None
    consumer: str | None = None
    upstream_path: str | None = None  # forward this path instead of Kong's (SPEC §8 unescape)
    # Monitor mode: this admission stands in for the denial enforcement would have answered.
    would_deny: Decision | None = None

    @property
    def body(self) -> dict[str, str] | None:
        """The JSON body of a denial, as Kong's plugins send it."""
        return None if self.message is None else {"message": self.message}


PASS = Decision(allowed=True)


def deny(
    status: int, message: str, headers: Mapping[str, str] | None = None, **ids: Any
) -> Decision:
    """Build a denial."""
    return Decision(False, status, message, headers if headers is not None else {}, **ids)
