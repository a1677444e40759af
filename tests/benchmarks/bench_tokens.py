"""Token benchmark: Enforcer.decide with an API key vs a cached access token vs a first-seen one.

Run: .venv/bin/python tests/benchmarks/bench_tokens.py
One process, one config, side by side: the key and the tokens admit the same application to
operations of the same shape (one key package, one OpenID Connect package). Keys are RSA-2048
and EC P-256, served by a loopback JWKS endpoint (fetched once, when the config compiles).
Target: a cached token decides in at most 1.5x the time of an API key (medians of 25
interleaved rounds of 2,000 calls; the ratio is the median of the per-round ratios).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kong_ace import Enforcer, Request, hash_key  # noqa: E402
from tests.idp import IdP  # noqa: E402

KEY = "bench-key-0123456789abcdef"
KONG_HEADERS = {"host": ["api.example.com"], "user-agent": ["curl/8.5.0"], "accept": ["*/*"],
                "x-forwarded-for": ["10.0.0.1"]}
TARGET = 1.5


def config(idp: IdP) -> dict[str, Any]:
    big = [{"limit": 10**9, "duration": "seconds"}]
    return {
        "match_policy": "required",
        "specs_dir": str(ROOT / "specs"),
        "auth_strategies": [{"name": "corp", "type": "openid_connect", "issuer": idp.issuer,
                             "jwks_uri": idp.jwks_uri, "audience": ["flights-api"],
                             "scopes": ["flights:read"]}],
        "apis": [{"name": "flights", "spec_file": "flights.yaml"},
                 {"name": "bookings", "spec_file": "bookings.yaml"}],
        "packages": [
            {"name": "keys", "rate_limits": big, "operations": [{"api": "flights"}]},
            {"name": "tokens", "rate_limits": big, "auth_strategy": "corp",
             "operations": [{"api": "bookings"}]},
        ],
        "applications": [{"id": "app", "client_ids": ["web-client"],
                          "credentials": [{"key_hash": f"sha256:{hash_key(KEY)}"}],
                          "registrations": [{"package": "keys", "status": "approved"},
                                            {"package": "tokens", "status": "approved"}]}],
    }


def interleaved(fn: Any, batches: list[list[Any]], rounds: int = 25) -> list[list[float]]:
    """Seconds per call of each batch, measured in alternation round after round."""
    samples: list[list[float]] = [[] for _ in batches]
    for _ in range(rounds):
        for i, items in enumerate(batches):
            start = time.perf_counter()
            for item in items:
                fn(item)
            samples[i].append((time.perf_counter() - start) / len(items))
    return samples


def main() -> int:
    with IdP() as idp:
        enf = Enforcer(config(idp))
        keyed = [Request("GET", f"/flights/v1/flights/{i}", {**KONG_HEADERS, "apikey": [KEY]})
                 for i in range(100)]
        rsa = idp.token(idp.rsa, ttl=3600)
        cached = [Request("GET", f"/bookings/v2/bookings/{i}",
                          {**KONG_HEADERS, "authorization": [f"Bearer {rsa}"]})
                  for i in range(100)]

        def fresh(key: Any, n: int) -> list[Request]:
            tokens = [idp.token(key, ttl=3600, jti=str(i)) for i in range(n)]
            return [Request("GET", f"/bookings/v2/bookings/{i}",
                            {**KONG_HEADERS, "authorization": [f"Bearer {t}"]})
                    for i, t in enumerate(tokens)]

        first_rsa = fresh(idp.rsa, 300)
        first_ec = fresh(idp.ec, 300)
        for r in keyed + cached:
            assert enf.decide(r).allowed
        key_rounds, cached_rounds = interleaved(enf.decide, [keyed * 20, cached * 20])
        key_s, cached_s = statistics.median(key_rounds), statistics.median(cached_rounds)
        # The ratio per round (same load for both), then its median.
        ratio = statistics.median(c / k for k, c in zip(key_rounds, cached_rounds, strict=True))
        # First-seen: every token new to the cache (a fresh Enforcer cache per round).
        verifier = enf.auth.verifier

        def first_seen(reqs: list[Request]) -> float:
            samples = []
            for _ in range(5):
                verifier._cache.clear()
                start = time.perf_counter()
                for r in reqs:
                    enf.decide(r)
                samples.append((time.perf_counter() - start) / len(reqs))
            return statistics.median(samples)

        rsa_s, ec_s = first_seen(first_rsa), first_seen(first_ec)
        assert all(enf.decide(r).allowed for r in first_rsa[:3] + first_ec[:3])
    rows = [("API key (apikey header)", key_s), ("cached access token", cached_s),
            ("first-seen token, RS256 (RSA-2048)", rsa_s),
            ("first-seen token, ES256 (P-256)", ec_s)]
    print(f"{'decide with':40} {'per call':>10} {'per s':>10} {'vs key':>7}")
    for name, s in rows:
        print(f"{name:40} {s * 1e6:>8.2f}us {1 / s:>10,.0f} {s / key_s:>6.2f}x")
    print(f"target: cached token <= {TARGET}x API key (median of per-round ratios): {ratio:.2f}x "
          f"{'OK' if ratio <= TARGET else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
