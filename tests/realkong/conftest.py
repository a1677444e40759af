"""Fixtures of the real-Kong suite: the Kong install, an upstream, and a node factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.realkong.kong import SKIP_REASON, KongInstall, KongNode, Upstream, find_kong


@pytest.fixture(scope="session")
def real_kong() -> KongInstall:
    """The Kong to test against; skipped without one, but a failure in CI (CI set)."""
    found = find_kong()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the real-Kong suite would skip: {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    return found


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """A real HTTP upstream that answers 200 with what it received (one per test module)."""
    with Upstream() as server:
        yield server


@pytest.fixture(scope="module")
def kong_node(real_kong: KongInstall) -> Iterator[Callable[..., KongNode]]:
    """Factory: ``kong_node(declarative, mode=..., ...)`` starts a KongNode, stopped at teardown."""
    nodes: list[KongNode] = []

    def start(declarative: dict[str, Any], **kw: Any) -> KongNode:
        node = KongNode(declarative, install=real_kong, **kw)
        nodes.append(node)
        return node.start()

    yield start
    for node in reversed(nodes):
        node.cleanup()
