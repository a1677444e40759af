"""Load kong.yml, find the global `ace` plugin and compile its config with the core."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kong_ace.core.enforcer import Enforcer
from kong_ace.errors import ConfigError
from kong_ace.ops.deckfile import DeckFile, Plugin, load_deck_file
from kong_ace.ops.router import Router

PLUGIN_NAME = "ace"
NO_ACE = "no 'ace' plugin in this file (it must be a global plugin: top-level plugins[])"
NOT_GLOBAL = "{place}: the ace plugin must be global (no service, route or consumer)"
TWO_GLOBAL = "{place}: a second global ace plugin (Kong allows one per scope; first at {first})"
SPECS_HINT = ("specs_dir is '{specs_dir}' (from the file); pass --specs-dir DIR to use the specs "
              "next to you")
DISABLED = "{place}: the ace plugin has enabled: false, so nothing is enforced"


@dataclass
class Loaded:
    """A parsed declarative file, its ace plugin, compiled config and router."""

    deck: DeckFile
    plugin: Plugin
    config: dict[str, Any]
    enforcer: Enforcer
    router: Router
    warnings: list[str]

    @property
    def place(self) -> str:
        """Where the plugin config sits in the file, for messages."""
        return f"{self.plugin.place}.config"


def find_ace(deck: DeckFile) -> tuple[Plugin, list[str]]:
    """The global ace plugin, and warnings about ace plugins elsewhere."""
    found = [p for p in deck.plugins if p.name == PLUGIN_NAME]
    glob = [p for p in found if p.is_global]
    if not glob:
        if found:
            raise ConfigError("", NOT_GLOBAL.format(place=found[0].place))
        raise ConfigError("", NO_ACE)
    if len(glob) > 1:
        raise ConfigError("", TWO_GLOBAL.format(place=glob[1].place, first=glob[0].place))
    warnings = [NOT_GLOBAL.format(place=p.place) for p in found if not p.is_global]
    if not glob[0].enabled:
        warnings.append(DISABLED.format(place=glob[0].place))
    return glob[0], warnings


@dataclass
class Source:
    """A parsed declarative file and the ace plugin config in it, before compiling."""

    deck: DeckFile
    plugin: Plugin
    config: dict[str, Any]
    warnings: list[str]


def read(path: str | Path, specs_dir: str | None = None) -> Source:
    """Parse kong.yml and pick the ace config; raises DeckFileError or ConfigError."""
    deck = load_deck_file(path)
    plugin, warnings = find_ace(deck)
    config = copy.deepcopy(dict(plugin.config))
    if specs_dir is not None:
        # Given on the command line, so relative to where the operator stands.
        config["specs_dir"] = str(Path(specs_dir).resolve())
    return Source(deck, plugin, config, deck.warnings + warnings)


def compile_source(src: Source) -> Loaded:
    """Compile the ace config with the core and model the file's routes; raises ConfigError."""
    enforcer = Enforcer(src.config, base_dir=src.deck.path.resolve().parent)
    router = Router(src.deck.routes)
    return Loaded(src.deck, src.plugin, src.config, enforcer, router,
                  src.warnings + router.warnings)


def load(path: str | Path, specs_dir: str | None = None) -> Loaded:
    """Everything `check` and `explain` need; raises DeckFileError or ConfigError."""
    return compile_source(read(path, specs_dir))


def hint(config: dict[str, Any], specs_dir_given: bool, exc: ConfigError) -> str | None:
    """Advice for a spec that cannot be read because specs_dir names the gateway's path."""
    if specs_dir_given or "cannot read spec" not in exc.problem or not config.get("specs_dir"):
        return None
    return SPECS_HINT.format(specs_dir=config["specs_dir"])
