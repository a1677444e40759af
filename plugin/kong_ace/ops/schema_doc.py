"""The configuration reference page, rendered from the schema the plugin server reports to Kong."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Field = dict[str, Any]

# Attributes shown in their own column or folded into the type; every other one is a constraint.
_SHOWN = {"type", "elements", "fields", "default", "description", "required"}


def dump(server: str | None = None) -> list[dict[str, Any]]:
    """Run `kong-ace-server --dump` (as Kong's `..._QUERY_CMD` does) and return its plugin list."""
    exe = server or str(Path(sys.executable).with_name("kong-ace-server"))
    out = subprocess.run([exe, "--dump"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def config_schema(info: list[dict[str, Any]]) -> Field:
    """The `config` record of the `ace` plugin in a `--dump` answer."""
    (plugin,) = [p for p in info if p["Name"] == "ace"]
    for entry in plugin["Schema"]["fields"]:
        if "config" in entry:
            return entry["config"]
    raise ValueError("the dump has no config field")


def walk(record: Field, path: str = "config") -> Iterator[tuple[str, str, Field]]:
    """Yield (record path, field name, field) for every field, depth first, in schema order."""
    for entry in record["fields"]:
        ((name, field),) = entry.items()
        yield path, name, field
        inner = _record_of(field)
        if inner is not None:
            yield from walk(inner, _child_path(path, name, field))


def undocumented(record: Field) -> list[str]:
    """Dotted names of the fields that have no description."""
    return [f"{path}.{name}" for path, name, field in walk(record) if not field.get("description")]


def render(record: Field) -> str:
    """The Markdown page: one table per record, top level first."""
    sections: dict[str, list[str]] = {}
    for path, name, field in walk(record):
        rows = sections.setdefault(path, [])
        rows.append(_row(path, name, field))
    out = [_INTRO]
    for path, rows in sections.items():
        out.append(f"## `{path}` {{#{_anchor(path)}}}\n")
        out.append("| field | type, default, constraints | description |")
        out.append("|---|---|---|")
        out.extend(rows)
        out.append("")
    return "\n".join(out)


_INTRO = """# Schema reference

<!-- Generated at build time from `kong-ace-server --dump` (kong_ace/ops/schema_doc.py). -->

Every field of the `ace` plugin's `config`, as the plugin server reports it to Kong
(`kong-ace-server --dump`, which Kong runs as `pluginserver_ace_query_cmd`). Kong validates a
config against exactly this schema before the plugin sees it; ACE's own checks (names that must
exist, ambiguous templates, one of `spec_file` / `spec` / `operations`, …) come after, and are
described in [Configuration](configuration.md). This page is generated when the site is built,
so it cannot drift from the code.

**required** means Kong refuses a config without the field, unless Kong can fill it in: a
field with a default takes it, and a required record left out is built from its fields'
defaults (Kong 3.9.1, `kong/db/schema/init.lua`, `handle_missing_field`). Records, and arrays
of records, link to the table of their fields.
"""


def _row(path: str, name: str, field: Field) -> str:
    lines = [_type(path, name, field)]
    if "default" in field:
        lines.append(f"default {_code(field['default'])}")
    constraints = _constraints(field)
    if field.get("required"):
        constraints = ["**required**", *constraints]
    if constraints:
        lines.append("; ".join(constraints))
    description = table_text(field.get("description", ""))
    return f"| `{name}` | {'<br>'.join(lines)} | {description} |"


def _type(path: str, name: str, field: Field) -> str:
    kind = field["type"]
    if kind == "record":
        return f"[record](#{_anchor(_child_path(path, name, field))})"
    if kind in ("array", "set"):
        elements = field["elements"]
        if elements["type"] == "record":
            return f"{kind} of [records](#{_anchor(_child_path(path, name, field))})"
        inner = _constraints(elements)
        return f"{kind} of {elements['type']}" + (f" ({'; '.join(inner)})" if inner else "")
    return kind


def _constraints(field: Field) -> list[str]:
    out = []
    for attr, value in field.items():
        if attr in _SHOWN:
            continue
        if attr == "one_of":
            out.append("one of " + ", ".join(_code(v) for v in value))
        elif attr == "between":
            out.append(f"between {value[0]:,} and {value[1]:,}".replace(",", "\u202f"))
        elif attr == "len_min":
            unit = "item" if field["type"] in ("array", "set") else "character"
            out.append(f"at least {value} {unit}" + ("s" if value != 1 else ""))
        elif attr == "starts_with":
            out.append(f"starts with {_code(value)}")
        elif attr in ("referenceable", "encrypted") and value is True:
            out.append({"referenceable": "vault reference allowed",
                        "encrypted": "encrypted by Kong at rest"}[attr])
        else:
            out.append(f"`{attr}`: {_code(value)}")
    return out


def _record_of(field: Field) -> Field | None:
    if field["type"] == "record":
        return field
    if field["type"] in ("array", "set") and field["elements"]["type"] == "record":
        return field["elements"]
    return None


def _child_path(path: str, name: str, field: Field) -> str:
    return f"{path}.{name}" + ("[]" if field["type"] in ("array", "set") else "")


def _anchor(path: str) -> str:
    return path.replace("[]", "").replace(".", "-").replace("_", "-")


def table_text(text: str) -> str:
    """Plain text for a Markdown table cell: no markup, no HTML, one line."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _code(value: Any) -> str:
    return "`" + json.dumps(value) + "`"
