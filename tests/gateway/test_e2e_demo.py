"""`python -m kong_ace.ops.demo` replays sample requests through the real plugin server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kong_ace.ops.demo import SAMPLES


@pytest.mark.parametrize("args", [[], ["--classic"]])
def test_demo_prints_one_line_per_request(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "kong_ace.ops.demo", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.split(" ", 1)[0] in
             {"GET", "POST", "DELETE"}]
    assert len(lines) == len(SAMPLES)
    assert "200" in lines[0] and "app=web-app" in lines[0] and "op=listFlights" in lines[0]
    assert "429 API rate limit exceeded" in lines[6]
    assert "403 registration pending approval" in lines[11]
    assert "app=mobile-app" in lines[12]
    assert "404 no API operation matches this request" in lines[-1]
    # The demo keys never appear in the output.
    assert "ace_web_" not in out.stdout and "ace_partner_" not in out.stdout
