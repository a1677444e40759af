"""A small validator of Kong's schema DSL (kong/db/schema/init.lua), for the plugin's config.

Covers what our schema uses: record/array/set/map/string/number/integer/boolean, required,
default (filled in as Kong's process_auto_fields does), one_of, between, len_min, len_max,
starts_with; an undeclared field is an error, as in Kong. ``process`` gives the config as Kong
hands it to StartInstance.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

Errors = dict[str, str]
Resolver = Callable[[str], str]

VAULT_PREFIX = "{vault://"


def is_reference(value: Any) -> bool:
    """kong/pdk/vault.lua is_reference: a ``{vault://...}`` string."""
    return isinstance(value, str) and value.startswith(VAULT_PREFIX) and value.endswith("}")


def env_vault(env: dict[str, str] | None = None) -> Resolver:
    """Kong's `env` vault (kong/vaults/env): ``{vault://env/redis-pass}`` reads REDIS_PASS."""
    source = os.environ if env is None else env

    def resolve(reference: str) -> str:
        vault, _, resource = reference[len(VAULT_PREFIX):-1].partition("/")
        if vault != "env":
            raise ValueError(f"only the env vault is played by the harness: {reference}")
        name = resource.split("/", 1)[0].replace("-", "_").upper()
        return source.get(name, "")  # Kong logs a failed resolution and leaves the value empty

    return resolve


def process(value: Any, schema: dict[str, Any],
            resolve: Resolver | None = None) -> tuple[Any, Errors]:
    """The config Kong sends StartInstance (process_auto_fields, "select" context).

    Defaults filled, required records built, unset fields absent rather than null, and each
    record holding a vault reference in a ``referenceable`` field gets the resolved value plus
    a ``"$refs"`` map naming the reference. Undeclared fields are kept (Kong would refuse the
    config; the errors say so) so tests can still send them.
    """
    filled, errors = validate(value, schema)
    return _processed(filled, schema, resolve or env_vault()), errors


def _processed(value: Any, schema: dict[str, Any], resolve: Resolver) -> Any:
    kind = schema.get("type")
    if kind == "record" and isinstance(value, dict):
        declared = {name: sub for entry in schema.get("fields", [])
                    for name, sub in entry.items()}
        out: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        for name, v in value.items():
            sub = declared.get(name)
            if v is None:
                continue  # null in select context without `nulls`: absent
            if sub is None:
                out[name] = v
                continue
            if sub.get("type") == "string" and sub.get("referenceable") and is_reference(v):
                refs[name] = v
                v = resolve(v)
            out[name] = _processed(v, sub, resolve)
        if refs:
            out["$refs"] = refs
        return out
    if kind in ("array", "set") and isinstance(value, list):
        return [_processed(v, schema["elements"], resolve) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _processed(v, schema["values"], resolve) for k, v in value.items()}
    return value


def validate(value: Any, schema: dict[str, Any]) -> tuple[Any, Errors]:
    """Fill defaults and validate ``value`` against a field schema; (filled value, errors)."""
    errors: Errors = {}
    filled = _field(value, schema, "config", errors)
    return filled, errors


def plugin_config_schema(info: dict[str, Any]) -> dict[str, Any]:
    """The `config` field from a plugin-info record (what `--dump` prints)."""
    for entry in info["Schema"]["fields"]:
        if "config" in entry:
            return entry["config"]  # type: ignore[no-any-return]
    raise KeyError("plugin schema has no config field")


def _field(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> Any:
    if value is None and "default" in schema:
        value = copy.deepcopy(schema["default"])
    if value is None and schema.get("type") == "record" and schema.get("required"):
        value = {}  # Kong builds required records from their fields' defaults
    if value is None:
        if schema.get("required"):
            errors[place] = "required field missing"
        return None
    kind = schema.get("type")
    checker = _CHECKS.get(kind)  # type: ignore[arg-type]
    if checker is None:
        errors[place] = f"unknown schema type {kind!r}"
        return value
    return checker(value, schema, place, errors)


def _record(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> Any:
    if not isinstance(value, dict):
        errors[place] = "expected a record"
        return value
    declared: dict[str, dict[str, Any]] = {}
    for entry in schema.get("fields", []):
        ((name, sub),) = entry.items()
        declared[name] = sub
    out: dict[str, Any] = {}
    for name in value:
        if name not in declared:
            errors[f"{place}.{name}"] = "unknown field"
            out[name] = value[name]  # kept for callers that send it anyway (process)
    for name, sub in declared.items():
        out[name] = _field(value.get(name), sub, f"{place}.{name}", errors)
    return out


def _array(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> Any:
    if isinstance(value, dict) and not value:
        value = []
    if not isinstance(value, list):
        errors[place] = "expected an array"
        return value
    _lengths(len(value), schema, place, errors)
    elements = schema.get("elements")
    if elements is None:
        errors[place] = "array schema without elements"
        return value
    out = []
    for i, item in enumerate(value):
        if item is None:
            errors[f"{place}[{i + 1}]"] = "required field missing"
            continue
        out.append(_field(item, elements, f"{place}[{i + 1}]", errors))
    if schema.get("type") == "set" and len({repr(x) for x in out}) != len(out):
        errors[place] = "set has duplicates"
    return out


def _map(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> Any:
    if not isinstance(value, dict):
        errors[place] = "expected a map"
        return value
    return {_field(k, schema["keys"], f"{place}.<key>", errors):
            _field(v, schema["values"], f"{place}.{k}", errors) for k, v in value.items()}


def _string(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> Any:
    if not isinstance(value, str):
        errors[place] = "expected a string"
        return value
    if value == "" and schema.get("len_min", 1) > 0:
        errors[place] = "length must be at least 1"  # Kong strings default to len_min = 1
    _lengths(len(value), schema, place, errors)
    _one_of(value, schema, place, errors)
    prefix = schema.get("starts_with")
    if prefix is not None and not value.startswith(prefix):
        errors[place] = f"should start with: {prefix}"
    return value


def _number(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> Any:
    integer = schema.get("type") == "integer"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        errors[place] = "expected an integer" if integer else "expected a number"
        return value
    between = schema.get("between")
    if between is not None and not between[0] <= value <= between[1]:
        errors[place] = f"value should be between {between[0]} and {between[1]}"
    _one_of(value, schema, place, errors)
    return value


def _boolean(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> Any:
    if not isinstance(value, bool):
        errors[place] = "expected a boolean"
    return value


def _lengths(n: int, schema: dict[str, Any], place: str, errors: Errors) -> None:
    if "len_min" in schema and n < schema["len_min"]:
        errors[place] = f"length must be at least {schema['len_min']}"
    if "len_max" in schema and n > schema["len_max"]:
        errors[place] = f"length must be at most {schema['len_max']}"


def _one_of(value: Any, schema: dict[str, Any], place: str, errors: Errors) -> None:
    choices = schema.get("one_of")
    if choices is not None and value not in choices:
        errors[place] = f"expected one of: {', '.join(map(str, choices))}"


_CHECKS = {
    "record": _record,
    "array": _array,
    "set": _array,
    "map": _map,
    "string": _string,
    "number": _number,
    "integer": _number,
    "boolean": _boolean,
}
