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


ORDERS_KEY = "conf_orders_k3y_0123456789abcdef"
MAPPED_ID = "7a8b9c0d-1111-4222-8333-aaaabbbbcccc"


def confusion2_config(**overrides: Any) -> dict[str, Any]:
    """The first round's catalog plus the second round's shapes (issue 20).

    - ``shop`` spells its paths with capitals (``/Orders/{id}``): web-app may only read orders;
    - ``console`` is scoped to Kong wildcard hosts and in no package;
    - ``uploads`` is POST-only (a large upload may not be inspected);
    - ``id-app`` is mapped by consumer id, ``mobile-app`` by username.
    """
    config = confusion_config()
    config["apis"] += [
        {"name": "shop", "base_path": "/shop", "operations": [
            {"method": "GET", "path": "/Orders/{id}", "operation_id": "getOrder"},
            {"method": "DELETE", "path": "/Orders/{id}", "operation_id": "deleteOrder"},
        ]},
        {"name": "console", "base_path": "/console",
         "hosts": ["*.admin.example.com", "admin.example.*"],
         "operations": [{"method": "GET", "path": "/stats", "operation_id": "adminStats"}]},
        {"name": "uploads", "base_path": "/uploads", "operations": [
            {"method": "POST", "path": "/{name}", "operation_id": "upload"}]},
    ]
    config["packages"][0]["operations"] += [
        {"api": "shop", "operation_id": "getOrder"}, {"api": "uploads"}]
    config["applications"].append(
        {"id": "id-app", "consumer": MAPPED_ID,
         "registrations": [{"package": "basic", "status": "approved"}]})
    for i, api in enumerate(config["apis"]):
        if api["name"] in overrides.get("path_case", {}):
            config["apis"][i] = {**api, "path_case": overrides["path_case"][api["name"]]}
    config.update({k: v for k, v in overrides.items() if k != "path_case"})
    return config
