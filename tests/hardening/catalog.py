"""The hardening catalog: spec-based and hand-listed APIs, keys, and its oracle operations.

The oracle's operation list is read from the spec files and the config with plain YAML, not
through kong_ace's spec compiler or matcher.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kong_ace import hash_key

SPECS = Path(__file__).resolve().parents[2] / "specs"
KEYS = {
    "basic": "hk_basic_Zq3x9LwP0aTT7u1mKc",
    "api": "hk_api_R4nd0mV4lu3sXyZ12345",
    "pending": "hk_pending_Qw3rty0987654321",
    "revoked": "hk_revoked_Asdfgh1234567890",
    "none": "hk_none_Zxcvbn1234567890ab",
}
APP_OF_KEY = {v: k + "-app" for k, v in KEYS.items()}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

HAND_OPS = [
    {"method": "GET", "path": "/files/{name}.json"},
    {"method": "GET", "path": "/v1/{a}-{b}"},
    {"method": "GET", "path": "/static/literal"},
    {"method": "GET", "path": "/static/{x}"},
    {"method": "HEAD", "path": "/static/{x}"},
    {"method": "POST", "path": "/static/{x}/;edit"},
    {"method": "DELETE", "path": "/caf\u00e9/{id}"},
    # Spelled with capitals: a case-insensitive upstream reads /hand/reports/1 as these.
    {"method": "GET", "path": "/Reports/{id}"},
    {"method": "DELETE", "path": "/Reports/{id}"},
    {"method": "GET", "path": "/reports/export"},
]


def _app(name: str, regs: list[dict[str, Any]], **cred: Any) -> dict[str, Any]:
    return {"id": name + "-app",
            "credentials": [{"key_hash": "sha256:" + hash_key(KEYS[name]), **cred}],
            "registrations": regs}


def hardening_config(**overrides: Any) -> dict[str, Any]:
    """No rate limits unless overridden: authorization properties are not hidden by 429s."""
    config: dict[str, Any] = {
        "match_policy": "required",
        "specs_dir": str(SPECS),
        "apis": [
            {"name": "flights", "spec_file": "flights.yaml"},
            {"name": "bookings", "spec_file": "bookings.yaml"},
            {"name": "hand", "base_path": "/hand", "operations": copy.deepcopy(HAND_OPS)},
            # Kong's wildcard hosts: any depth on the left, anything on the right.
            {"name": "admin", "base_path": "/admin",
             "hosts": ["*.admin.example", "admin.example.*"],
             "operations": [{"method": "GET", "path": "/stats"},
                            {"method": "POST", "path": "/jobs/{id}"},
                            {"method": "DELETE", "path": "/jobs/{id}"}]},
        ],
        "packages": [
            {"name": "basic", "operations": [
                {"api": "flights", "operation_id": "listFlights"},
                {"api": "flights", "method": "GET", "path": "/flights/{flightId}"},
                {"api": "hand", "method": "GET", "path": "/files/{name}.json"},
                {"api": "hand", "method": "GET", "path": "/static/{x}"},
                {"api": "hand", "method": "DELETE", "path": "/caf\u00e9/{id}"},
                {"api": "hand", "method": "GET", "path": "/Reports/{id}"},
                {"api": "admin", "method": "POST", "path": "/jobs/{id}"},
            ]},
            {"name": "all-hand", "operations": [{"api": "hand"}]},
        ],
        "applications": [
            _app("basic", [{"package": "basic", "status": "approved"},
                           {"package": "all-hand", "status": "pending"}]),
            _app("api", [{"api": "bookings", "status": "approved"},
                         {"package": "all-hand", "status": "approved"}]),
            _app("pending", [{"package": "basic", "status": "pending"}]),
            _app("revoked", [{"package": "basic", "status": "approved"}], status="revoked"),
            _app("none", []),
        ],
    }
    config.update(overrides)
    return config


@dataclass(frozen=True)
class OracleOp:
    api: str
    method: str
    template: str  # as listed in the spec/config (without the base path)
    full: str  # with the base path
    op_id: str
    hosts: tuple[str, ...] = ()  # the API's hosts (lower case), as Kong's router reads them


def _base_path(doc: dict[str, Any]) -> str:
    url = (doc.get("servers") or [{}])[0].get("url", "")
    for name, var in ((doc.get("servers") or [{}])[0].get("variables") or {}).items():
        url = url.replace("{" + name + "}", str(var.get("default", "")))
    if "://" in url:
        url = "/" + url.split("://", 1)[1].partition("/")[2]
    return url.rstrip("/")


def oracle_ops(config: dict[str, Any]) -> list[OracleOp]:
    ops: list[OracleOp] = []
    for api in config["apis"]:
        if api.get("spec_file"):
            doc = yaml.safe_load((SPECS / api["spec_file"]).read_text())
            base = api.get("base_path", _base_path(doc))
            for path, item in doc["paths"].items():
                if "$ref" in item:  # a local path-item reference: "#/components/pathItems/X"
                    node = doc
                    for token in item["$ref"].lstrip("#/").split("/"):
                        node = node[token]
                    item = node
                for m, op in item.items():
                    if m in METHODS:
                        oid = op.get("operationId") or f"{m.upper()} {path}"
                        ops.append(OracleOp(api["name"], m.upper(), path, base + path, oid))
        for op in api.get("operations") or []:
            base = api.get("base_path", "")
            ops.append(OracleOp(api["name"], op["method"], op["path"], base + op["path"],
                                f"{op['method']} {op['path']}",
                                tuple(h.lower() for h in api.get("hosts") or ())))
    return ops
