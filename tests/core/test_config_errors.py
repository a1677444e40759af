"""Each kind of config error, with the exact message that names the place."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kong_ace import ConfigError, Enforcer
from tests.conftest import example_config

HASH = "sha256:" + "ab" * 32


def error_of(config: dict[str, Any], base_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        Enforcer(config, base_dir=base_dir)
    return str(err.value)


def edited(edit) -> dict[str, Any]:
    config = example_config()
    edit(config)
    return config


def test_example_config_compiles_with_kong_extras_and_nulls() -> None:
    config = example_config()
    config.update({"__plugin_id": "p", "__seq__": 3, "__key__": "k", "__ws_id": "w",
                   "route_id": None, "service_id": None, "consumer_id": None,
                   "plugin_instance_name": None, "anonymous": None, "key_in_query": None})
    config["rate_limiting"]["sync_rate"] = None
    config["rate_limiting"]["redis"] = None
    config["apis"][0]["base_path"] = None
    e = Enforcer(config)
    assert len(e.catalog.operations()) == 15


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["packages"][1]["operations"].append(
            {"api": "flights", "method": "DELETE", "path": "/flight/{id}"}),
         "packages[1].operations[2]: API 'flights' has no operation 'DELETE /flight/{id}'"),
        (lambda c: c["packages"][0]["operations"].append({"api": "trains"}),
         "packages[0].operations[4]: unknown API 'trains'"),
        (lambda c: c["packages"][0]["operations"].append(
            {"api": "flights", "operation_id": "nope"}),
         "packages[0].operations[4]: API 'flights' has no operation with operation_id 'nope'"),
        (lambda c: c["packages"][0]["operations"].append(
            {"api": "flights", "operation_id": "listFlights"}),
         "packages[0].operations[4]: operation 'listFlights' of API 'flights' is already in "
         "package 'flights-basic'"),
        (lambda c: c["applications"][0]["registrations"].append(
            {"package": "gold", "status": "approved"}),
         "applications[0].registrations[1]: unknown package 'gold'"),
        (lambda c: c["applications"][0]["registrations"].append(
            {"api": "trains", "status": "approved"}),
         "applications[0].registrations[1]: unknown API 'trains'"),
        (lambda c: c["applications"][0]["registrations"].append(
            {"package": "flights-basic", "status": "pending"}),
         "applications[0].registrations[1]: application 'web-app' is already registered to "
         "package 'flights-basic'"),
        (lambda c: c["applications"][0]["registrations"].__setitem__(
            0, {"package": "flights-basic", "status": "maybe"}),
         "applications[0].registrations[0].status: 'maybe' is not one of approved, pending, "
         "rejected, revoked"),
        (lambda c: c["applications"].append(copy.deepcopy(c["applications"][0])),
         "applications[3].id: duplicate application id 'web-app'"),
        (lambda c: c["applications"][1]["credentials"].append(
            dict(c["applications"][0]["credentials"][0])),
         "applications[1].credentials[1].key_hash: the same key is already a credential of "
         "application 'web-app'"),
        (lambda c: c["applications"][0]["credentials"][0].__setitem__("key_hash", "plainkey"),
         "applications[0].credentials[0].key_hash: must be 'sha256:<64 hex digits>' "
         "(kong-ace keygen prints one)"),
        (lambda c: c["applications"][0]["credentials"][0].__setitem__("expires_at", "soon"),
         "applications[0].credentials[0].expires_at: 'soon' is not an ISO 8601 time"),
        (lambda c: c["applications"].append({"id": "x", "consumer": "mobile",
                                             "registrations": []}),
         "applications[3].consumer: consumer 'mobile' is already mapped to application "
         "'mobile-app'"),
        (lambda c: c["apis"].append(dict(c["apis"][0])),
         "apis[2].name: duplicate API name 'flights'"),
        (lambda c: c["apis"][0].pop("spec_file"),
         "apis[0]: needs exactly one of spec_file, spec or operations (got none of them)"),
        (lambda c: c["apis"][0].__setitem__("spec", "openapi: 3.0.0"),
         "apis[0]: needs exactly one of spec_file, spec or operations (got spec_file and spec)"),
        (lambda c: c["apis"][0].__setitem__("spec_file", "missing.yaml"),
         "apis[0].spec_file: missing.yaml: cannot read spec: No such file or directory"),
        (lambda c: c["packages"].append(dict(c["packages"][0])),
         "packages[2].name: duplicate package name 'flights-basic'"),
        (lambda c: c["packages"][0]["rate_limits"].append({"limit": -1, "duration": "hours"}),
         "packages[0].rate_limits[2].limit: must be an integer >= 0"),
        (lambda c: c["packages"][0]["rate_limits"].append({"limit": 1, "duration": "weeks"}),
         "packages[0].rate_limits[2].duration: 'weeks' is not one of seconds, minutes, hours, "
         "days"),
        (lambda c: c["packages"][0]["rate_limits"].append({"limit": 1, "duration": "minutes"}),
         "packages[0].rate_limits[2]: a second limit per minute"),
        (lambda c: c.__setitem__("match_policy", "always"),
         "match_policy: 'always' is not one of if_present, required"),
        (lambda c: c.__setitem__("registrations", []), "registrations: unknown field"),
        (lambda c: c["applications"][0].__setitem__("registration", []),
         "applications[0].registration: unknown field"),
        (lambda c: c["rate_limiting"].__setitem__("sync_rate", 0.001),
         "rate_limiting.sync_rate: must be 0 or at least 0.02"),
        (lambda c: c["rate_limiting"].__setitem__("sync_rate", 0),
         "rate_limiting.redis: is required when sync_rate is set"),
        (lambda c: c["rate_limiting"].__setitem__("window_type", "rolling"),
         "rate_limiting.window_type: 'rolling' is not one of fixed, sliding"),
        (lambda c: c.__setitem__("key_names", []),
         "key_names: must name at least one header or query parameter"),
    ],
)
def test_reference_and_field_errors(edit, message: str) -> None:
    assert error_of(edited(edit)) == message


def spec_error(tmp_path: Path, text: str, name: str = "broken.yaml") -> str:
    (tmp_path / name).write_text(text)
    return error_of({"specs_dir": str(tmp_path), "apis": [{"name": "b", "spec_file": name}]})


HEAD = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("swagger: '2.0'\npaths: {}\n",
         "apis[0].spec_file: broken.yaml: not an OpenAPI 3 document (openapi: '2.0')"),
        ("- a\n- b\n",
         "apis[0].spec_file: broken.yaml: not an OpenAPI document (expected a map at the top "
         "level)"),
        (HEAD + "paths: [a, b]\n", "apis[0].spec_file: broken.yaml: paths: must be a map of path "
                                   "templates"),
        (HEAD + "paths:\n  /flights/{id:\n    get: {}\n",
         "apis[0].spec_file: broken.yaml: paths./flights/{id: unbalanced braces in '{id'"),
        (HEAD + "paths:\n  flights:\n    get: {}\n",
         "apis[0].spec_file: broken.yaml: paths.flights: a path template must start with '/'"),
        (HEAD + "paths:\n  /a:\n    $ref: '#/components/pathItems/A'\n",
         "apis[0].spec_file: broken.yaml: paths./a.$ref: cannot resolve "
         "'#/components/pathItems/A'"),
        (HEAD + "paths:\n  /a:\n    $ref: 'other.yaml#/A'\n",
         "apis[0].spec_file: broken.yaml: paths./a.$ref: cannot resolve 'other.yaml#/A': no "
         "file other.yaml"),
        (HEAD + "paths:\n  /a:\n    get: [1]\n",
         "apis[0].spec_file: broken.yaml: paths./a.get: an operation must be a map"),
        ("openapi: 3.0.0\npaths: {a: [}\n",
         "apis[0].spec_file: broken.yaml: not valid YAML or JSON: while parsing a flow node"),
    ],
)
def test_spec_errors_name_file_and_place(tmp_path: Path, text: str, message: str) -> None:
    assert spec_error(tmp_path, text) == message


def test_external_path_item_ref_resolves(tmp_path: Path) -> None:
    (tmp_path / "items.yaml").write_text("A:\n  get: {operationId: fromOther}\n")
    (tmp_path / "main.json").write_text(json.dumps(
        {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
         "paths": {"/a": {"$ref": "items.yaml#/A"}}}))
    e = Enforcer({"specs_dir": str(tmp_path), "apis": [{"name": "m", "spec_file": "main.json"}]})
    assert e.match("GET", "/a").id == "fromOther"


def test_validation_findings_are_warnings_not_errors(tmp_path: Path) -> None:
    (tmp_path / "sloppy.yaml").write_text(
        HEAD + "paths:\n  /a:\n    get:\n      operationId: 7\n      responses: {}\n")
    e = Enforcer({"specs_dir": str(tmp_path), "apis": [{"name": "s", "spec_file": "sloppy.yaml"}]})
    assert e.match("GET", "/a") is not None
    assert e.warnings and e.warnings[0].startswith("apis[0].spec_file: sloppy.yaml: ")
