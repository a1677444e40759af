"""Shared fixtures: the example config, its demo keys, and GitHub's REST description."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.redis_server import RedisServer, running

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GITHUB_SPEC = (
    ROOT / ".venv/octokit/node_modules/@octokit/openapi/generated/api.github.com.json"
)
WEB_KEY = "ace_web_pGS1PzevuWwCqQ8VdIDE49MqSKjfG0VF"
PARTNER_KEY = "ace_partner_oeA86pM1k4gy-nBGDpb-ueAM4lJg-Zpt"

_EXAMPLE = yaml.safe_load((ROOT / "kong.yml").read_text())


def example_config() -> dict[str, Any]:
    """The ace plugin config of kong.yml, with specs_dir pointing at the repo's specs/."""
    (plugin,) = [p for p in _EXAMPLE["plugins"] if p["name"] == "ace"]
    config = copy.deepcopy(plugin["config"])
    config["specs_dir"] = str(SPECS)
    return config


@pytest.fixture
def config() -> dict[str, Any]:
    return example_config()


@pytest.fixture(scope="session")
def github_spec() -> Path:
    if not GITHUB_SPEC.exists():
        pytest.fail(f"{GITHUB_SPEC} is missing: run `bash .ci/setup`")
    return GITHUB_SPEC


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for one test."""
    with running(tmp_path) as server:
        yield server
