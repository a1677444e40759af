"""The documentation says only what the code does: its example configs pass `kong-ace check`,
and every field of the schema Kong sees has a description for the generated reference."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kong_ace.gateway.schema import config_record
from kong_ace.ops.schema_doc import (
    config_schema,
    dump,
    render,
    table_text,
    undocumented,
    walk,
)
from tests.conftest import ROOT
from tests.ops.helpers import ace_plugin, example_deck, kong_ace

PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
YAML_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)
CONFIG_FIELDS = {name for entry in config_record()["fields"] for name in entry}


def _examples() -> list[tuple[str, dict[str, Any]]]:
    """(place, data) for every YAML block of the docs that configures the ace plugin."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in YAML_BLOCK.finditer(text):
            data = yaml.safe_load(match.group(1))
            line = text.count("\n", 0, match.start()) + 1
            if _is_ace_example(data):
                found.append((f"{page.relative_to(ROOT)}:{line}", data))
    return found


def _is_ace_example(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    plugins = data.get("plugins")
    if isinstance(plugins, list) and any(p.get("name") == "ace" for p in plugins):
        return True
    return bool(data) and set(data) <= CONFIG_FIELDS


def _as_deck(data: dict[str, Any]) -> dict[str, Any]:
    """A whole decK file: the example kong.yml with the block's plugins or config fields."""
    deck = example_deck()
    if "plugins" in data:
        config = ace_plugin(data)["config"]
        config["specs_dir"] = ace_plugin(deck)["config"]["specs_dir"]
        deck["plugins"] = data["plugins"]
    else:
        ace_plugin(deck)["config"].update(data)
    return deck


EXAMPLES = _examples()


def test_the_docs_have_example_configs() -> None:
    """The extraction finds the examples (an empty list would make the check below vacuous)."""
    places = [place for place, _ in EXAMPLES]
    assert any(p.startswith("docs/getting-started.md") for p in places), places
    assert any(p.startswith("docs/configuration.md") for p in places), places


@pytest.mark.parametrize(("place", "data"), EXAMPLES, ids=[p for p, _ in EXAMPLES])
def test_example_config_passes_check(place: str, data: dict[str, Any], tmp_path: Path) -> None:
    """`kong-ace check` accepts the example, as the gateway would compile it."""
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(_as_deck(data), sort_keys=False))
    proc = kong_ace("check", str(path))
    assert proc.returncode == 0, f"{place}: {proc.stdout}{proc.stderr}"


def test_every_schema_field_has_a_description() -> None:
    """The generated reference documents every field, within what Kong's metaschema accepts."""
    record = config_schema(dump())
    assert len(list(walk(record))) > 90  # the whole config, as --dump reports it
    assert undocumented(record) == []
    # kong/db/schema/metaschema.lua: description = { type = "string", len_min = 10, len_max = 500 }
    bad = [f"{path}.{name}: {len(field['description'])} characters"
           for path, name, field in walk(record) if not 10 <= len(field["description"]) <= 500]
    assert bad == []


def test_the_reference_page_lists_every_field_with_its_constraints() -> None:
    """Each field is a row of its record's table, with its default and constraints."""
    record = config_schema(dump())
    page = render(record)
    for path, name, field in walk(record):
        section = page.split(f"## `{path}`", 1)[1].split("\n## ", 1)[0]
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
        assert table_text(field["description"]) in row
        if "default" in field:
            assert f"`{json.dumps(field['default'])}`" in row
        for value in field.get("one_of", []):
            assert f"`{json.dumps(value)}`" in row
        if field.get("required"):
            assert "**required**" in row
