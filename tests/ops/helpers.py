"""Run the kong-ace command line as a subprocess, on kong.yml and on variants of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, SPECS

KONG_YML = ROOT / "kong.yml"


def kong_ace(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m kong_ace.ops.cli ARGS` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "kong_ace.ops.cli", *args], input=stdin, capture_output=True,
        text=True, env=full_env, cwd=cwd or ROOT, timeout=60,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    """Parse a command's --json output."""
    return json.loads(proc.stdout)


def example_deck() -> dict[str, Any]:
    """The example kong.yml as data, with specs_dir pointing at the repo's specs/."""
    data = yaml.safe_load(KONG_YML.read_text())
    ace_plugin(data)["config"]["specs_dir"] = str(SPECS)
    return data


def ace_plugin(data: dict[str, Any]) -> dict[str, Any]:
    """The ace plugin entry of a decK file."""
    return next(p for p in data["plugins"] if p["name"] == "ace")


def route(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested route by name."""
    return next(r for s in data["services"] for r in s.get("routes", []) if r["name"] == name)


def write_deck(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A variant of the example kong.yml, written to tmp_path."""
    data = example_deck()
    if edit is not None:
        edit(data)
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
