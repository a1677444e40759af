"""An identity provider's signing keys (JWKS): fetched at compile time, refreshed in the background.

The request path only reads ``KeySet.keys`` (a dict replaced whole on refresh). An unknown
``kid`` asks for one refresh per ``min_refresh`` seconds per key set and waits for it at most
``wait`` seconds; an unreachable IdP leaves the cached keys in place.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from jwt.algorithms import Algorithm

# PyJWT and urllib.request are imported where used: both import `ssl`, which the plugin server
# must not load before gevent patches it (tests/limits/test_gevent.py).

log = logging.getLogger("kong_ace")

Fetcher = Callable[[str, float], bytes]

DISCOVERY_PATH = "/.well-known/openid-configuration"
FETCH_TIMEOUT = 3.0  # seconds per HTTP exchange with the IdP
MAX_DOCUMENT = 1 << 20  # a JWKS or discovery document larger than 1 MB is refused
REFRESH_INTERVAL = 300.0  # background refresh period
MIN_REFRESH = 30.0  # at most one unknown-kid refresh per key set per this many seconds
UNKNOWN_KID_WAIT = 1.0  # the request that triggers an unknown-kid refresh waits at most this

BAD_DOCUMENT = "not a JSON object"
NO_KEYS = "no 'keys' list"
ISSUER_MISMATCH = "discovery document names issuer '{got}', not '{want}'"
NO_JWKS_URI = "discovery document has no jwks_uri"


class Verifier(NamedTuple):
    """A public key prepared for one JWS algorithm (PyJWT's implementation of it)."""

    algorithm: Algorithm  # PyJWT's
    key: Any

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``signing_input``."""
        return bool(self.algorithm.verify(signing_input, self.key, signature))


class JwksError(Exception):
    """A JWKS or discovery document could not be fetched or read."""


def http_fetch(url: str, timeout: float) -> bytes:
    """GET ``url`` (the default fetcher); raises JwksError on any failure."""
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": "application/json",
                                               "User-Agent": "kong-ace"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - operator URL
            body = resp.read(MAX_DOCUMENT + 1)
    except Exception as exc:  # noqa: BLE001 - every network failure is the same to callers
        raise JwksError(f"{url}: {type(exc).__name__}: {exc}") from None
    if len(body) > MAX_DOCUMENT:
        raise JwksError(f"{url}: document larger than {MAX_DOCUMENT} bytes")
    return body


def parse_jwks(doc: Any) -> dict[str | None, Mapping[str, Any]]:
    """The signing JWKs of a JWKS document by ``kid``; raises JwksError when unreadable."""
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except ValueError:
            raise JwksError(BAD_DOCUMENT) from None
    if not isinstance(doc, Mapping):
        raise JwksError(BAD_DOCUMENT)
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise JwksError(NO_KEYS)
    out: dict[str | None, Mapping[str, Any]] = {}
    for jwk in keys:
        if not isinstance(jwk, Mapping) or jwk.get("use", "sig") != "sig":
            continue  # encryption keys never verify signatures
        if jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # symmetric ('oct') keys are never accepted
        kid = jwk.get("kid")
        out[kid if isinstance(kid, str) else None] = dict(jwk)
    return out


class KeySet:
    """The keys of one issuer, from an inline JWKS, a jwks_uri or OpenID discovery."""

    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None = None,
        inline: Any = None,
        fetch: Fetcher = http_fetch,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = REFRESH_INTERVAL,
        min_refresh: float = MIN_REFRESH,
        wait: float = UNKNOWN_KID_WAIT,
    ) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.inline = inline is not None
        self._fetch = fetch
        self._clock = clock
        self.refresh_interval = refresh_interval
        self.min_refresh = min_refresh
        self.wait = wait
        self.keys: dict[str | None, Mapping[str, Any]] = {}
        self._prepared: dict[tuple[str | None, str], Verifier | None] = {}
        self.error: str | None = None  # the last fetch failure, for `kong-ace check`
        self.fetched_at: float | None = None
        self.fetches = 0
        self._last_attempt = float("-inf")
        self._lock = threading.Lock()
        self._pending: threading.Event | None = None
        if inline is not None:
            self.keys = parse_jwks(inline)

    @property
    def remote(self) -> bool:
        """Whether the keys come from the network (and are refreshed)."""
        return not self.inline

    def load(self) -> None:
        """Fetch the keys now (compile time); a failure is logged and kept, never raised."""
        if self.remote:
            self.refresh()

    def refresh(self) -> bool:
        """Fetch the JWKS (discovering its URI first if needed); keep the old keys on failure."""
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            uri = self.jwks_uri or self._discover()
            keys = parse_jwks(self._fetch(uri, FETCH_TIMEOUT))
        except JwksError as exc:
            self.error = str(exc)
            log.warning("ace: JWKS of issuer %s not refreshed (keeping %d cached keys): %s",
                        self.issuer, len(self.keys), exc)
            return False
        self.jwks_uri = uri
        self._prepared = {}
        self.keys = keys  # one assignment: readers see the old or the new set, never a mix
        self.error = None
        self.fetched_at = self._clock()
        return True

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            doc = json.loads(self._fetch(url, FETCH_TIMEOUT))
        except ValueError:
            raise JwksError(f"{url}: {BAD_DOCUMENT}") from None
        if not isinstance(doc, Mapping):
            raise JwksError(f"{url}: {BAD_DOCUMENT}")
        if doc.get("issuer") != self.issuer:  # OpenID Connect Discovery 1.0 §4.3
            raise JwksError(f"{url}: " + ISSUER_MISMATCH.format(got=doc.get("issuer"),
                                                                 want=self.issuer))
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or not uri:
            raise JwksError(f"{url}: {NO_JWKS_URI}")
        return uri

    def due(self) -> bool:
        """Whether the background refresher should fetch again."""
        return self.remote and self._clock() - self._last_attempt >= self.refresh_interval

    def key(self, kid: str | None, alg: str) -> Verifier | None:
        """The key ``kid`` prepared for ``alg``, or None (unknown kid, or a key of another type)."""
        found = self._prepared.get((kid, alg), False)
        if found is not False:
            return found  # type: ignore[return-value]
        from jwt import PyJWK
        from jwt.exceptions import InvalidKeyError, PyJWKError

        jwk = self.keys.get(kid)
        if jwk is None and kid is None and len(self.keys) == 1:
            jwk = next(iter(self.keys.values()))  # a token without kid, an IdP with one key
        prepared = None
        if jwk is not None and jwk.get("alg") in (None, alg):
            try:
                # PyJWK checks that the key fits the algorithm (type, curve); prepare_key
                # repeats PyJWT's own checks on the key object.
                pyjwk = PyJWK(dict(jwk), algorithm=alg)
                prepared = Verifier(pyjwk.Algorithm, pyjwk.Algorithm.prepare_key(pyjwk.key))
            except (PyJWKError, InvalidKeyError, ValueError, TypeError):
                prepared = None  # wrong key type for alg, or a malformed key
        if jwk is not None:
            self._prepared[(kid, alg)] = prepared
        return prepared

    def refresh_for_unknown(self) -> bool:
        """An unknown kid was seen: refresh at most once per ``min_refresh``; wait ``wait`` s."""
        if not self.remote:
            return False
        with self._lock:
            pending = self._pending
            if pending is None:
                if self._clock() - self._last_attempt < self.min_refresh:
                    return False
                self._last_attempt = self._clock()
                pending = self._pending = threading.Event()
                threading.Thread(target=self._refresh_and_signal, args=(pending,),
                                 name="kong-ace-jwks", daemon=True).start()
            elif self.wait <= 0:
                return False
        # The fetch runs on its own thread (a greenlet under gevent): this request waits a
        # bounded time, and the refresh finishes for later requests even if this one gives up.
        return pending.wait(self.wait)

    def _refresh_and_signal(self, pending: threading.Event) -> None:
        try:
            self.refresh()
        finally:
            with self._lock:
                self._pending = None
            pending.set()


class Refresher:
    """One daemon thread (a greenlet under gevent) refreshing every live remote KeySet."""

    def __init__(self, tick: float = 5.0) -> None:
        self._sets: weakref.WeakSet[KeySet] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tick = tick

    def watch(self, keys: KeySet) -> None:
        """Refresh ``keys`` in the background for as long as something else holds it."""
        if not keys.remote:
            return
        with self._lock:
            self._sets.add(keys)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="kong-ace-jwks-refresh",
                                                daemon=True)
                self._thread.start()

    def run_once(self) -> int:
        """Refresh the key sets that are due; how many were fetched."""
        with self._lock:
            due = [k for k in self._sets if k.due()]
        for keys in due:
            keys.refresh()
        return len(due)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self._tick):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the refresher must outlive any one failure
                log.exception("ace: JWKS refresh failed")


REFRESHER = Refresher()
