"""A small catalog with the shapes request confusion plays on (SPEC §8), for core and e2e tests."""

from __future__ import annotations

from typing import Any

from kong_ace import hash_key

WEB_KEY = "conf_web_k3y_0123456789abcdef"
MOBILE = {"id": "5d6e7f80-1111-4222-8333-999900001111", "username": "mobile"}
MOBILE_CREDENTIAL = {"id": "6e7f8091-2222-4333-8444-000011112222", "consumer": {"id": MOBILE["id"]}}


def confusion_config(**overrides: Any) -> dict[str, Any]:
    """web-app may read users, flights, reports and jobs and POST items; nothing else."""
    config: dict[str, Any] = {
        "match_policy": "if_present",
        "apis": [
            {"name": "files", "base_path": "/files", "operations": [
                {"method": "GET", "path": "/users/{id}", "operation_id": "getUser"},
                {"method": "GET", "path": "/users/export", "operation_id": "exportUsers"},
                {"method": "GET", "path": "/flights/{id}", "operation_id": "getFlight"},
                {"method": "GET", "path": "/flights/{id}/manifest.json",
                 "operation_id": "exportManifest"},
                {"method": "GET", "path": "/reports/{year}-{month}-{day}.csv",
                 "operation_id": "getReport"},
                {"method": "GET", "path": "/jobs/{name}", "operation_id": "getJob"},
                {"method": "GET", "path": "/jobs/{name}:cancel", "operation_id": "cancelJob"},
                {"method": "GET", "path": "/items/{id}", "operation_id": "getItem"},
                {"method": "POST", "path": "/items/{id}", "operation_id": "postItem"},
                {"method": "DELETE", "path": "/items/{id}", "operation_id": "deleteItem"},
            ]},
            {"name": "public", "base_path": "/svc", "hosts": ["public.example"],
             "operations": [{"method": "GET", "path": "/data", "operation_id": "publicData"}]},
            {"name": "admin", "base_path": "/svc", "hosts": ["admin.example"],
             "operations": [{"method": "GET", "path": "/data", "operation_id": "adminData"}]},
        ],
        "packages": [{"name": "basic", "operations": [
            {"api": "files", "operation_id": "getUser"},
            {"api": "files", "operation_id": "getFlight"},
            {"api": "files", "operation_id": "getReport"},
            {"api": "files", "operation_id": "getJob"},
            {"api": "files", "operation_id": "getItem"},
            {"api": "files", "operation_id": "postItem"},
            {"api": "public"},
        ]}],
        "applications": [
            {"id": "web-app", "credentials": [{"key_hash": "sha256:" + hash_key(WEB_KEY)}],
             "registrations": [{"package": "basic", "status": "approved"}]},
            {"id": "mobile-app", "consumer": "mobile",
             "registrations": [{"package": "basic", "status": "approved"}]},
        ],
    }
    config.update(overrides)
    return config
