"""The schema Kong gets from `kong-ace-server --dump`, checked with a Kong schema-DSL validator."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from kong_ace import Enforcer
from kong_ace.core import catalog, strategies
from kong_ace.testing import dump_info, plugin_config_schema, server_command, validate
from tests.gateway.support import KONG_YML, outcomes_config


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    infos = dump_info()
    assert len(infos) == 1  # Kong 3.9+ registers only the first plugin of a query command
    return infos[0]


def example_config() -> dict[str, Any]:
    doc = yaml.safe_load(KONG_YML.read_text())
    return next(p["config"] for p in doc["plugins"] if p["name"] == "ace")


def test_dump_is_the_plugin_info_kong_expects(info: dict[str, Any]) -> None:
    assert info["Name"] == "ace"
    assert info["Priority"] == 955
    assert info["Phases"] == ["access"]
    major, minor, patch = info["Version"].split(".")
    assert all(part.isdigit() for part in (major, minor, patch))
    assert info["Schema"]["name"] == "ace"


def test_dump_prints_json_and_nothing_else() -> None:
    out = subprocess.run([*server_command(), "--dump"], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout)[0]["Name"] == "ace"
    assert out.stderr == ""


def test_example_kong_yml_config_validates_and_compiles(info: dict[str, Any]) -> None:
    schema = plugin_config_schema(info)
    filled, errors = validate(example_config(), schema)
    assert errors == {}
    # What Kong then hands the plugin (defaults filled, unset fields null) compiles.
    filled["specs_dir"] = str(KONG_YML.parent / "specs")
    enforcer = Enforcer(filled)
    assert enforcer.catalog.applications.keys() == {"web-app", "partner-portal", "mobile-app"}


def test_test_configs_would_pass_kong_too(info: dict[str, Any]) -> None:
    _, errors = validate(outcomes_config(), plugin_config_schema(info))
    assert errors == {}


@pytest.mark.parametrize(
    ("mutate", "place", "message"),
    [
        (lambda c: c.update(surprise=1), "config.surprise", "unknown field"),
        (lambda c: c["apis"][0].update(spec_url="x"), "config.apis[1].spec_url", "unknown field"),
        (lambda c: c.update(match_policy="maybe"), "config.match_policy", "expected one of"),
        (lambda c: c["packages"][0]["rate_limits"][0].update(limit=-1),
         "config.packages[1].rate_limits[1].limit", "between"),
        (lambda c: c["packages"][0]["rate_limits"][0].update(duration="weeks"),
         "config.packages[1].rate_limits[1].duration", "expected one of"),
        (lambda c: c["applications"][0]["registrations"][0].pop("status"),
         "config.applications[1].registrations[1].status", "required"),
        (lambda c: c["applications"][0]["credentials"][0].update(key_hash="md5:x"),
         "config.applications[1].credentials[1].key_hash", "should start with"),
        (lambda c: c.update(key_in_query="yes"), "config.key_in_query", "expected a boolean"),
    ],
)
def test_schema_rejects_what_kong_would(info: dict[str, Any], mutate: Any, place: str,
                                        message: str) -> None:
    config = copy.deepcopy(example_config())
    mutate(config)
    _, errors = validate(config, plugin_config_schema(info))
    assert place in errors and message in errors[place]


def test_kong_fills_defaults(info: dict[str, Any]) -> None:
    filled, errors = validate({}, plugin_config_schema(info))
    assert errors == {}
    assert filled["match_policy"] == "if_present"
    assert filled["key_names"] == ["apikey"]
    assert filled["rate_limiting"]["window_type"] == "sliding"
    assert filled["anonymous"] is None


@pytest.mark.skipif(shutil.which("deck") is None, reason="deck not installed")
def test_deck_validates_kong_yml() -> None:
    subprocess.run(["deck", "validate", "--state", str(KONG_YML)], check=True,
                   capture_output=True, timeout=60)


def _names(record: dict[str, Any]) -> set[str]:
    return {name for entry in record["fields"] for name in entry}


def _sub(record: dict[str, Any], *path: str) -> dict[str, Any]:
    for name in path:
        field = next(entry[name] for entry in record["fields"] if name in entry)
        record = field["elements"] if field["type"] == "array" else field
    return record


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ((), catalog.TOP_FIELDS),
        (("apis",), catalog.API_FIELDS),
        (("apis", "operations"), catalog.MANUAL_OP_FIELDS),
        (("apis", "rate_limits"), catalog.LIMIT_FIELDS),
        (("packages",), catalog.PACKAGE_FIELDS),
        (("packages", "operations"), catalog.PACKAGE_OP_FIELDS),
        (("applications",), catalog.APP_FIELDS),
        (("applications", "credentials"), catalog.CREDENTIAL_FIELDS),
        (("applications", "registrations"), catalog.REGISTRATION_FIELDS),
        (("rate_limiting",), catalog.RATE_LIMITING_FIELDS),
        (("rate_limiting", "redis"), catalog.REDIS_FIELDS),
        (("auth_strategies",), strategies.STRATEGY_FIELDS),
    ],
)
def test_schema_declares_every_field_the_core_reads(info: dict[str, Any], path: tuple[str, ...],
                                                    fields: frozenset[str]) -> None:
    # Kong rejects undeclared fields: a field the core accepts must be in the schema.
    assert _names(_sub(plugin_config_schema(info), *path)) == set(fields)
