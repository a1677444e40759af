"""The documentation says only what the code does: its example configs pass `kong-ace check`,
and every field of the schema Kong sees has a description for the generated reference."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
from kong_ace.testing.schema import validate
from tests.conftest import ROOT
from tests.ops.helpers import ace_plugin, example_deck, kong_ace

PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
YAML_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)
CONFIG_FIELDS = {name for entry in config_record()["fields"] for name in entry}
ACE_YAML = re.compile(r"name: ace\b|^(" + "|".join(sorted(CONFIG_FIELDS)) + "):", re.M)


def _examples() -> list[tuple[str, Any]]:
    """(place, decK data) for every YAML block of the docs that configures the ace plugin;
    the data is None for such a block that does not parse."""
    found: list[tuple[str, Any]] = []
    for page in PAGES:
        text = page.read_text()
        for match in YAML_BLOCK.finditer(text):
            place = f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            try:
                data = yaml.safe_load(match.group(1))
            except yaml.YAMLError:
                if ACE_YAML.search(match.group(1)):
                    found.append((place, None))
                continue
            deck = _as_deck(data)
            if deck is not None:
                found.append((place, deck))
    return found


def _ace_entry(plugins: Any) -> dict[str, Any] | None:
    if isinstance(plugins, list):
        return next((p for p in plugins if isinstance(p, dict) and p.get("name") == "ace"), None)
    return None


def _as_deck(data: Any) -> dict[str, Any] | None:
    """The block as a whole decK file (the example kong.yml around a part), or None when the
    block is not about the ace plugin. Spec files are read from the repository's specs/."""
    deck = example_deck()
    specs_dir = ace_plugin(deck)["config"]["specs_dir"]
    if isinstance(data, dict) and _ace_entry(data.get("plugins")) is not None:
        deck.update(data)                             # a decK file, maybe without services
    elif _ace_entry(data) is not None:                # a list of plugin entries
        deck["plugins"] = data
    elif isinstance(data, dict) and data.get("name") == "ace":
        deck["plugins"] = [data]                      # one plugin entry
    elif isinstance(data, dict) and set(data) == {"config"} and isinstance(data["config"], dict) \
            and data["config"] and set(data["config"]) <= CONFIG_FIELDS:
        ace_plugin(deck)["config"].update(data["config"])
    elif isinstance(data, dict) and data and set(data) <= CONFIG_FIELDS:
        ace_plugin(deck)["config"].update(data)       # config fields
    else:
        return None
    config = ace_plugin(deck).setdefault("config", {})
    config["specs_dir"] = specs_dir
    return deck


EXAMPLES = _examples()
SCHEMA = config_schema(dump())


def test_the_docs_have_example_configs() -> None:
    """The extraction finds the examples (an empty list would make the check below vacuous)."""
    places = [place for place, _ in EXAMPLES]
    assert any(p.startswith("docs/getting-started.md") for p in places), places
    assert any(p.startswith("docs/configuration.md") for p in places), places


@pytest.mark.parametrize(("place", "deck"), EXAMPLES, ids=[p for p, _ in EXAMPLES])
def test_example_config_passes_check(place: str, deck: Any, tmp_path: Path) -> None:
    """Kong's schema and `kong-ace check` accept the example, as the gateway would."""
    assert deck is not None, f"{place}: the YAML does not parse"
    _, errors = validate(ace_plugin(deck)["config"], SCHEMA)
    assert errors == {}, f"{place}: Kong's schema refuses it: {errors}"
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(deck, sort_keys=False))
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


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`, as .ci/run (not --quiet, which mutes --strict): a page missing
    from the nav, a broken link or anchor, or an unreadable docstring fails here too."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    proc = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
