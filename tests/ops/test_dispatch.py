"""The kong-ace dispatcher: help, unknown commands, and the demo hand-over."""

from __future__ import annotations

import sys
import types

import pytest

from kong_ace.ops import cli
from tests.ops.helpers import kong_ace


def test_help_lists_every_command():
    proc = kong_ace("--help")
    assert proc.returncode == 0
    for command in ("keygen", "hash-key", "check", "explain", "demo"):
        assert command in proc.stdout


def test_unknown_command_is_a_usage_error():
    proc = kong_ace("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_demo_hands_its_arguments_to_kong_ace_demo(monkeypatch):
    seen: list[list[str]] = []
    fake = types.ModuleType("kong_ace.ops.demo")
    fake.main = lambda argv=None: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kong_ace.ops.demo", fake)
    assert cli.main(["demo", "--fast", "x"]) == 7
    assert seen == [["--fast", "x"]]


def test_demo_missing_fails_with_a_clear_message(monkeypatch, capsys):
    def missing(name: str):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    assert cli.main(["demo"]) == 2
    assert cli.DEMO_MISSING in capsys.readouterr().err


def test_demo_import_errors_inside_the_demo_are_not_hidden(monkeypatch):
    def broken(name: str):
        raise ModuleNotFoundError("No module named 'somedep'", name="somedep")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["demo"])
