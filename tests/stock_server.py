"""The stock kong-pdk 0.36 dedicated server with kong_ace.testing.faulty: shows its faults."""

import sys

from kong_pdk.cli import start_dedicated_server

from kong_ace.gateway import plugin as adapter
from kong_ace.testing import faulty


class Plugin(faulty.Plugin):
    """kong-pdk's default Lua-style PDK returns (data, err) pairs."""

    def access(self, kong):  # noqa: ANN001, ANN201 - kong-pdk's signature
        """As faulty.Plugin, reading the data half of each answer."""
        if self.fault == "raise_first":
            raise RuntimeError("bug before the first PDK call")
        headers, _ = kong.request.get_headers()
        kong.service.request.set_headers({"x-seen-headers": str(len(headers or {}))})


if __name__ == "__main__":
    if "--adapter" in sys.argv:  # serve the real ace adapter instead
        sys.argv.remove("--adapter")
        sys.exit(start_dedicated_server("ace", adapter.Plugin, adapter.version, adapter.priority,
                                        list(adapter.Schema)))
    sys.exit(start_dedicated_server("ace", Plugin, "0.0.1", 955, list(faulty.Schema)))
