"""The folders are the layers: core and limits never import the edge, the CLI or the harness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugin" / "kong_ace"
EDGE = ("kong_ace.gateway", "kong_ace.ops", "kong_ace.testing")
RULES = {
    "core": EDGE + ("kong_ace.limits.storage", "kong", "gevent", "msgpack"),
    "limits": EDGE + ("kong_ace.core", "kong", "msgpack"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(layer: str) -> list[str]:
    out = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, module in imported_modules(path):
            for banned in RULES[layer]:
                if module == banned or module.startswith(banned + "."):
                    out.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    assert violations(layer) == []


def test_the_walk_sees_relative_and_lazy_imports(tmp_path: Path, monkeypatch) -> None:
    """The check itself can fail: a planted upward import is reported."""
    fake = tmp_path / "kong_ace"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "bad.py").write_text(
        "def f():\n    from ..gateway import plugin\n    import kong_ace.ops.cli\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert violations("core") == [
        "core/bad.py:2 imports kong_ace.gateway",
        "core/bad.py:2 imports kong_ace.gateway.plugin",
        "core/bad.py:3 imports kong_ace.ops.cli",
    ]
