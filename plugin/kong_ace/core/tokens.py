"""Bearer access tokens (JWT): read from the request, verify once, cache by hash until expiry.

PyJWT checks the signature only; the claims (`iss`, `exp`/`nbf` against the Enforcer's injected
clock, `aud`, scopes, the client id) are checked here so that time never comes from PyJWT.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kong_ace.core.jwks import KeySet
from kong_ace.core.logsafe import escape
from kong_ace.core.strategies import ALGORITHMS, TokenStrategy

log = logging.getLogger("kong_ace")

MAX_TOKEN = 8192  # bytes; a larger bearer token is refused before any parsing
CACHE_SIZE = 10_000  # verified tokens kept per Enforcer
REJECT_CACHE_SIZE = 1_000  # tokens whose signature failed, kept so a replay costs a dict hop
_SCHEME = "bearer "
# A JWS in compact serialization: three base64url parts (RFC 7515 §7.1), no padding.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# Why a token was refused: shown by `kong-ace explain` and logged at debug level, never sent.
MALFORMED = "not a well-formed JWT"
TOO_LARGE = f"longer than {MAX_TOKEN} bytes"
BAD_ALG = "algorithm '{alg}' is not allowed"
UNKNOWN_ISSUER = "issuer '{iss}' is not one this operation accepts"
UNKNOWN_KID = "no key '{kid}' in the issuer's JWKS"
BAD_SIGNATURE = "signature does not verify"
NO_EXP = "no exp claim"
EXPIRED = "expired at {exp} (leeway {leeway:g} s)"
NOT_YET = "not valid before {nbf} (leeway {leeway:g} s)"
WRONG_AUDIENCE = "audience {aud} is not {want}"
NO_CLIENT = "none of the claims {claims} holds a client id"
UNKNOWN_CLIENT = "client id '{cid}' belongs to no application"
MISSING_SCOPE = "scopes {missing} missing"
TWO_TOKENS = "more than one Authorization header"


@dataclass(frozen=True, slots=True)
class Verified:
    """A token whose signature verified: its claims, as long as they matter."""

    issuer: str
    alg: str
    claims: Mapping[str, Any]
    exp: float
    nbf: float | None
    # Per strategy name: (client id or None, refusal reason or None, missing scopes).
    outcomes: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = field(
        default_factory=dict)


def bearer(headers: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(token, problem) from the Authorization header; (None, None) when no bearer token."""
    value = headers.get("authorization")
    if value is None:
        return None, None
    if type(value) is list:
        if len(value) != 1:
            tokens = [v for v in value if isinstance(v, str) and v[:7].lower() == _SCHEME]
            return (None, None) if not tokens else ("", TWO_TOKENS)
        value = value[0]
    if not isinstance(value, str) or value[:7].lower() != _SCHEME:
        return None, None  # another scheme (Basic, ...): not ours
    token = value[7:].strip()
    if len(token) > MAX_TOKEN:
        return "", TOO_LARGE
    return token, (None if token else MALFORMED)


def parse_compact(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes] | None:
    """(header, claims, signing input, signature) of a JWS compact token, or None if malformed.

    Parsed here, strictly (three base64url parts, JSON objects), because PyJWT's parser checks
    the alphabet character by character in Python: ~1 ms per token on a loaded machine.
    """
    if not _COMPACT.fullmatch(token):
        return None
    h, p, s = token.split(".")
    try:
        header = json.loads(_unb64(h), parse_constant=_no_constant)
        claims = json.loads(_unb64(p), parse_constant=_no_constant)
        signature = _unb64(s)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None  # deeply nested JSON too: any token that cannot be parsed is invalid
    if type(header) is not dict or type(claims) is not dict:
        return None
    return header, claims, f"{h}.{p}".encode("ascii"), signature


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); an `exp` of NaN would never expire.
    raise ValueError(f"{name} is not JSON")


def _unb64(part: str) -> bytes:
    if len(part) % 4 == 1:
        raise ValueError("impossible base64url length")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_hash(token: str) -> bytes:
    """The cache key of a token: its SHA-256 (plain tokens are never stored)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenVerifier:
    """Signature verification per issuer, and the verified-token cache of one Enforcer."""

    def __init__(self, key_sets: Mapping[str, KeySet], algorithms: Mapping[str, frozenset[str]],
                 clock: Callable[[], float]) -> None:
        self._key_sets = key_sets  # by issuer
        self._algorithms = algorithms  # by issuer: the union its strategies allow
        self._clock = clock
        self._cache: dict[bytes, Verified] = {}
        self._rejected: dict[bytes, str] = {}

    def verify(self, token: str) -> tuple[Verified | None, str | None]:
        """(verified token, None) or (None, reason); a repeat costs a hash and a dict hop."""
        digest = token_hash(token)
        found = self._cache.get(digest)
        if found is not None:
            return found, None
        reason = self._rejected.get(digest)
        if reason is not None:
            return None, reason
        verified, reason, final = self._verify(token)
        if verified is not None:
            cache = self._cache
            if len(cache) >= CACHE_SIZE:
                self._evict()
            cache[digest] = verified
        elif final:
            if len(self._rejected) >= REJECT_CACHE_SIZE:
                _pop_oldest(self._rejected)
            self._rejected[digest] = reason  # type: ignore[assignment]
        return verified, reason

    def _evict(self) -> None:
        # Tokens arrive roughly in issue order, so the oldest tenth is about the first to expire:
        # dropping it in one go keeps insertion O(1) amortised.
        cache = self._cache
        for _ in range(max(1, len(cache) // 10)):
            _pop_oldest(cache)

    def _verify(self, token: str) -> tuple[Verified | None, str | None, bool]:
        # Returns (verified, reason, final): a final refusal may be cached, an unknown kid not.
        parsed = parse_compact(token)
        if parsed is None:
            return None, MALFORMED, True
        header, claims, signing_input, signature = parsed
        alg = header.get("alg")
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss not in self._key_sets:
            return None, UNKNOWN_ISSUER.format(iss=_show(iss)), True
        if alg not in ALGORITHMS or alg not in self._algorithms[iss]:
            return None, BAD_ALG.format(alg=_show(alg)), True  # never 'none', never HS*
        kid = header.get("kid")
        if (kid is not None and not isinstance(kid, str)) or "crit" in header:
            # RFC 7515 §4.1.11: critical extensions we do not understand make the token invalid.
            return None, MALFORMED, True
        keys = self._key_sets[iss]
        key = keys.key(kid, alg)
        if key is None and kid not in keys.keys and keys.refresh_for_unknown():
            key = keys.key(kid, alg)
        if key is None:
            known = kid in keys.keys
            return None, (BAD_SIGNATURE if known else UNKNOWN_KID.format(kid=_show(kid))), known
        try:
            good = key.verify(signing_input, signature)  # PyJWT's algorithm, cryptography's math
        except Exception:  # noqa: BLE001 - any failure inside verification is a bad signature
            good = False
        if not good:
            return None, BAD_SIGNATURE, True
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            return None, NO_EXP, True
        nbf = claims.get("nbf")
        if isinstance(nbf, bool) or not isinstance(nbf, (int, float)):
            nbf = None
        return Verified(iss, alg, claims, float(exp), nbf), None, False

    def __len__(self) -> int:
        return len(self._cache)


def check(v: Verified, s: TokenStrategy, now: float) -> tuple[str | None, str | None,
                                                             tuple[str, ...]]:
    """(client id, refusal reason, missing scopes) of a verified token under strategy ``s``."""
    if v.exp + s.leeway <= now:
        return None, EXPIRED.format(exp=_when(v.exp), leeway=s.leeway), ()
    if v.nbf is not None and v.nbf - s.leeway > now:
        return None, NOT_YET.format(nbf=_when(v.nbf), leeway=s.leeway), ()
    found = v.outcomes.get(s.name)
    if found is None:
        found = v.outcomes[s.name] = _static_check(v, s)
    return found


def _static_check(v: Verified, s: TokenStrategy) -> tuple[str | None, str | None,
                                                         tuple[str, ...]]:
    # Everything that does not depend on the time, computed once per token and strategy.
    if v.issuer != s.issuer:
        return None, UNKNOWN_ISSUER.format(iss=_show(v.issuer)), ()
    if v.alg not in s.algorithms:
        return None, BAD_ALG.format(alg=v.alg), ()
    claims = v.claims
    if s.audience:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in s.audience for a in auds if isinstance(a, str)):
            return None, WRONG_AUDIENCE.format(aud=_show(aud), want=list(s.audience)), ()
    cid = None
    for name in s.credential_claim:
        value = claims.get(name)
        if isinstance(value, str) and value:
            cid = value
            break
    if cid is None:
        return None, NO_CLIENT.format(claims=list(s.credential_claim)), ()
    missing = tuple(sc for sc in s.scopes if sc not in granted_scopes(claims))
    return cid, None, missing


def granted_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from `scope` (space-separated, RFC 8693/9068) or `scp` (a list or a string)."""
    out: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            out.update(value.split())
        elif isinstance(value, list):
            out.update(v for v in value if isinstance(v, str))
    return frozenset(out)


def claims_shown(claims: Mapping[str, Any], s: TokenStrategy | None) -> dict[str, Any]:
    """The claims a decision used, safe to print (never the token or its signature)."""
    names = ["iss", "sub", "aud", "exp", "nbf", "scope", "scp"]
    if s is not None:
        names += [c for c in s.credential_claim if c not in names]
    else:
        names += ["client_id", "azp"]
    return {n: claims[n] for n in names if n in claims}


def unverified_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) without verifying anything: for explanations only."""
    import jwt
    from jwt.exceptions import PyJWTError

    try:
        return (dict(jwt.get_unverified_header(token)),
                dict(jwt.decode(token, options={"verify_signature": False})))
    except (PyJWTError, ValueError, TypeError, RecursionError):
        return {}, {}


def _pop_oldest(d: dict[Any, Any]) -> None:
    # Another greenlet or thread may get there first.
    with contextlib.suppress(StopIteration, KeyError, RuntimeError):
        d.pop(next(iter(d)))


def _show(value: Any) -> str:
    # Claim values are attacker-chosen: shown bounded and escaped (no newline), never raw.
    try:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return escape(text, 80)


def _when(ts: float) -> str:
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return str(ts)
