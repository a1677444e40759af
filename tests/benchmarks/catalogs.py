"""Generated catalogs for benchmarks: many operations, applications and packages."""

from __future__ import annotations

import hashlib
from typing import Any

SHAPES = ["GET /r{i}", "POST /r{i}", "GET /r{i}/{{id}}", "PATCH /r{i}/{{id}}",
          "DELETE /r{i}/{{id}}", "GET /r{i}/{{id}}/items", "GET /r{i}/{{id}}/items/{{item}}",
          "PUT /r{i}/{{id}}/items/{{item}}", "GET /r{i}/{{id}}/export.{{fmt}}", "GET /r{i}/me"]


def key_of(n: int) -> str:
    """The demo key of generated application ``n``."""
    return f"bench-key-{n:06d}"


def generated_config(n_ops: int = 20_000, n_apps: int = 10_000, n_packages: int = 50,
                     n_apis: int = 10) -> dict[str, Any]:
    """A plugin config with ``n_ops`` operations over ``n_apis`` APIs, packages and apps."""
    per_api = n_ops // n_apis
    apis = []
    for a in range(n_apis):
        ops: list[dict[str, str]] = []
        i = 0
        while len(ops) < per_api:
            for shape in SHAPES:
                if len(ops) < per_api:
                    method, path = shape.format(i=i).split(" ")
                    ops.append({"method": method, "path": path,
                                "operation_id": f"a{a}-{method.lower()}-{path}"})
            i += 1
        apis.append({"name": f"api{a}", "base_path": f"/api{a}", "operations": ops})
    packages = []
    for p in range(n_packages):
        api = apis[p % n_apis]
        chunk = api["operations"][(p // n_apis) * 20:(p // n_apis) * 20 + 200]
        entries = [{"api": api["name"], "operation_id": op["operation_id"]} for op in chunk]
        entries[0]["rate_limits"] = [{"limit": 10**9, "duration": "seconds"}]
        packages.append({"name": f"pkg{p}", "operations": entries,
                         "rate_limits": [{"limit": 10**9, "duration": "seconds"},
                                         {"limit": 10**12, "duration": "hours"}]})
    packages.append({"name": "everything", "operations": [{"api": a["name"]} for a in apis],
                     "rate_limits": [{"limit": 10**12, "duration": "minutes"}]})
    apps = []
    for n in range(n_apps):
        digest = hashlib.sha256(key_of(n).encode()).hexdigest()
        apps.append({"id": f"app{n}", "credentials": [{"key_hash": f"sha256:{digest}"}],
                     "registrations": [{"package": f"pkg{n % n_packages}", "status": "approved"},
                                       {"package": "everything", "status": "approved"}]})
    return {"match_policy": "required", "apis": apis, "packages": packages,
            "applications": apps}
