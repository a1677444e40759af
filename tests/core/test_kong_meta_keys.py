"""Keys Kong adds inside any record of a plugin config (SPEC §10): `$refs` and the like."""

from __future__ import annotations

from typing import Any

import pytest

from kong_ace.core.catalog import compile_catalog
from kong_ace.errors import ConfigError
from tests.gateway.support import outcomes_config


@pytest.mark.parametrize("where", ["", "apis.0", "packages.0", "packages.0.operations.0",
                                   "applications.0", "applications.0.credentials.0",
                                   "applications.0.registrations.0", "rate_limiting",
                                   "rate_limiting.redis"])
def test_dollar_keys_are_accepted_at_every_level(where: str) -> None:
    config = outcomes_config(rate_limiting={"window_type": "fixed",
                                            "redis": {"host": "r", "password": "p"}})
    record: Any = config
    for part in filter(None, where.split(".")):
        record = record[int(part)] if part.isdigit() else record[part]
    record["$refs"] = {"password": "{vault://env/x}"}
    record["$other"] = 1
    compile_catalog(config)  # raised "<place>.$refs: unknown field" before


def test_other_unknown_keys_are_still_errors() -> None:
    config = outcomes_config()
    config["packages"][0]["ref"] = 1
    with pytest.raises(ConfigError, match=r"packages\[0\].ref: unknown field"):
        compile_catalog(config)
