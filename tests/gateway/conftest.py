"""End-to-end suites run in both modes: classic (PDK reads) and with the Lua companions."""

from __future__ import annotations

import pytest

from tests.gateway.support import MODES


@pytest.fixture(scope="module", params=MODES)
def kong_mode(request: pytest.FixtureRequest) -> str:
    """"classic" (no ace-context/ace-guard) or "companion" (both, as the Docker image runs)."""
    return request.param  # type: ignore[no-any-return]
