"""Shared pieces of the end-to-end tests: configs, keys and a request helper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kong_ace import hash_key
from kong_ace.ops.demo import ace_config
from kong_ace.testing import KongNode, KongRequest, Result

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
KONG_YML = REPO / "kong.yml"

MOBILE = {"id": "4b1f6a52-7c0e-4d2a-9a8e-0d6f2d1e5a01", "username": "mobile"}
# The key-auth credential that authenticated MOBILE (kong.client.get_credential()).
MOBILE_CREDENTIAL = {"id": "0c5e8a8e-53f4-4bb4-9d3c-6f1c2a7e9b10", "consumer": {"id": MOBILE["id"]}}
KEYS = {
    "good": "key-good-0123456789",
    "revoked": "key-revoked-0123456789",
    "expired": "key-expired-0123456789",
    "pending": "key-pending-0123456789",
    "rejected": "key-rejected-0123456789",
    "regrevoked": "key-regrevoked-0123456789",
    "mobile": "key-mobile-0123456789",
    "unregistered": "key-unregistered-0123456789",
}


MODES = ["classic", "companion"]
COMPANION_CALLS = ["kong.nginx.get_ctx", "kong.nginx.set_ctx"]  # SPEC §9: two per request


def node_in(mode: str, socket: str, config: dict[str, Any], **kw: Any) -> KongNode:
    """A KongNode in ``mode``: "companion" runs ace-context and ace-guard around the plugin."""
    return KongNode(socket, config, companions=mode == "companion", **kw)


def kong_yml_config() -> dict[str, Any]:
    """The example kong.yml's ace config, specs from the repo."""
    return ace_config(KONG_YML, SPECS)


def _app(app_id: str, key: str | None, regs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    creds = [{"key_hash": f"sha256:{hash_key(KEYS[key])}", **extra.pop("cred", {})}] if key else []
    return {"id": app_id, "credentials": creds, "registrations": regs, **extra}


def outcomes_config(**overrides: Any) -> dict[str, Any]:
    """A config that can produce every SPEC §4 outcome."""
    config: dict[str, Any] = {
        "match_policy": "required",
        "specs_dir": str(SPECS),
        "apis": [{"name": "flights", "spec_file": "flights.yaml"},
                 {"name": "bookings", "spec_file": "bookings.yaml"}],
        "packages": [
            {"name": "basic",
             "rate_limits": [{"limit": 1000, "duration": "minutes"}],
             "operations": [
                 {"api": "flights", "operation_id": "listFlights"},
                 {"api": "flights", "operation_id": "getAirport"},
                 {"api": "flights", "operation_id": "listSeats",
                  "rate_limits": [{"limit": 2, "duration": "minutes"}]},
             ]},
            {"name": "premium", "operations": [{"api": "bookings"}]},
        ],
        "applications": [
            _app("good", "good", [{"package": "basic", "status": "approved"}]),
            _app("revoked", "revoked", [{"package": "basic", "status": "approved"}],
                 cred={"status": "revoked"}),
            _app("expired", "expired", [{"package": "basic", "status": "approved"}],
                 cred={"expires_at": "2001-01-01T00:00:00Z"}),
            _app("pending", "pending", [{"package": "premium", "status": "pending"}]),
            _app("rejected", "rejected", [{"package": "premium", "status": "rejected"}]),
            _app("regrevoked", "regrevoked", [{"package": "premium", "status": "revoked"}]),
            _app("unregistered", "unregistered", []),
            _app("mobile-app", "mobile", [{"package": "premium", "status": "approved"}],
                 consumer="mobile"),
        ],
    }
    config.update(overrides)
    return config


def get(node: KongNode, path: str, key: str | None = None, *, method: str = "GET",
        worker: int = 0, headers: dict[str, Any] | None = None, **kw: Any) -> Result:
    """Send one request with ``key`` (a KEYS name) in the apikey header."""
    h = {"host": "api.example.com", **(headers or {})}
    if key is not None:
        h["apikey"] = KEYS.get(key, key)
    return node.request(KongRequest(method=method, path=path, headers=h, **kw), worker=worker)


_FLIGHTS, _BOOKINGS = "/flights/v1/flights", "/bookings/v2/bookings"
# Every denial outcomes_config() can give: (path, key, method, status, reason, operation,
# application) as the log summary names them (monitor-mode suites).
DENIALS = [
    ("/nowhere", "good", "GET", 404, "no_operation", None, None),
    ("/flights/v1/airports/JFK", "good", "DELETE", 405, "method_not_allowed", None, None),
    (_FLIGHTS, None, "GET", 401, "no_key", "listFlights", None),
    (_FLIGHTS, "not-a-key", "GET", 401, "unknown_key", "listFlights", None),
    (_FLIGHTS, "revoked", "GET", 401, "revoked", "listFlights", None),
    (_FLIGHTS, "expired", "GET", 401, "expired", "listFlights", None),
    (_FLIGHTS, "unregistered", "GET", 403, "not_registered", "listFlights", "unregistered"),
    (_BOOKINGS, "pending", "GET", 403, "pending", "listBookings", "pending"),
    (_BOOKINGS, "rejected", "GET", 403, "rejected", "listBookings", "rejected"),
    (_BOOKINGS, "regrevoked", "GET", 403, "registration_revoked", "listBookings", "regrevoked"),
]
