"""Stock kong-pdk 0.36 dedicated server serving the no-op plugin: a benchmark floor.

``python -m kong_ace.testing.stock [-g] -p PREFIX --socket-name NAME`` (kong-pdk's flags;
``-g`` is its gevent mode, the default is threading).
"""

from __future__ import annotations

import sys

from kong_pdk.cli import start_dedicated_server

from kong_ace.testing import noop

if __name__ == "__main__":
    sys.exit(start_dedicated_server("ace", noop.Plugin, noop.version, noop.priority,
                                    list(noop.Schema)))
