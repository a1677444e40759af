"""decK against a real Kong: `deck sync` of a declarative config (no pytest imports).

`deck sync --kong-addr URL -s FILE` is the spelling both Debian's decK 1.4.0 and today's decK
accept (newer releases also spell it `deck gateway sync`). decK needs the Admin API's `GET /`
to answer 200, so the nodes run a supervised plugin server (SPEC §10).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml


def available() -> bool:
    """Whether a `deck` is on PATH."""
    return shutil.which("deck") is not None


def deck(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `deck ARGS` (never raises on exit status)."""
    return subprocess.run(["deck", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def sync(admin_url: str, state: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`deck sync` of ``state`` (a declarative config) to the Kong at ``admin_url``."""
    with tempfile.TemporaryDirectory(prefix="kong-ace-deck-") as tmp:
        path = Path(tmp) / "kong.yml"
        path.write_text(yaml.safe_dump(state, sort_keys=False))
        return deck("sync", "--kong-addr", admin_url, "-s", str(path))
