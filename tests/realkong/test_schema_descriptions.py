"""Kong 3.9.1 accepts the schema's field descriptions and serves them on its Admin API."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

from kong_ace.ops.schema_doc import config_schema, dump, walk
from tests.gateway.support import outcomes_config
from tests.realkong.kong import KongNode, Upstream, ace_config


def test_kong_serves_every_description(kong_node: Callable[..., KongNode],
                                       upstream: Upstream) -> None:
    # Kong validates the dumped schema with its metaschema (kong/db/schema/metaschema.lua:
    # description is a string of 10 to 500 characters) and refuses to start otherwise.
    node = kong_node(ace_config(upstream.url, outcomes_config()), server="supervised")
    with urllib.request.urlopen(f"{node.admin_url}/schemas/plugins/ace", timeout=10) as resp:
        served = next(f["config"] for f in json.load(resp)["fields"] if "config" in f)
    ours = config_schema(dump())
    assert [(p, n, f["description"]) for p, n, f in walk(served)] == \
        [(p, n, f["description"]) for p, n, f in walk(ours)]
