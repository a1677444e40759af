"""The container's way to run the server: deploy/docker-entrypoint.sh, played without Docker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from kong_ace.testing import KongNode, server_command
from tests.gateway.support import MOBILE, get, outcomes_config

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"


def test_the_entrypoint_starts_the_supervised_server_before_kong(tmp_path: Path) -> None:
    socket = tmp_path / "prefix" / "ace.socket"
    kong = tmp_path / "kong-entrypoint.sh"  # stands in for the kong image's entrypoint
    kong.write_text('#!/bin/sh\n[ -S "$KONG_PLUGINSERVER_ACE_SOCKET" ] && echo "socket ready: $*"'
                    '\n')
    kong.chmod(0o755)
    env = {**os.environ, "KONG_PLUGINSERVER_ACE_SOCKET": str(socket),
           "KONG_ACE_SERVER": server_command()[0], "KONG_ACE_NEXT_ENTRYPOINT": str(kong)}
    out, log = tmp_path / "out", tmp_path / "log"
    with out.open("w") as stdout, log.open("w") as stderr:  # the server keeps them open
        subprocess.run([str(ENTRYPOINT), "kong", "docker-start"], env=env, timeout=60,
                       stdout=stdout, stderr=stderr, check=True)
    assert out.read_text().strip() == "socket ready: kong docker-start"
    node = KongNode(str(socket), outcomes_config(), consumers=[MOBILE])
    try:
        assert get(node, "/flights/v1/flights", "good").status == 200
        pid = node.workers[0].rpc.server_pid
    finally:
        node.close()
    supervisor = int(subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True,
                                    text=True, check=True).stdout)
    os.kill(supervisor, signal.SIGTERM)  # the supervisor started by the entrypoint
    deadline = time.monotonic() + 30
    while socket.exists():  # the supervisor removes its socket when it exits
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert "supervisor exiting" in log.read_text()


def test_the_dockerfile_runs_the_supervised_server_without_start_cmd() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "START_CMD" not in text.replace("no START_CMD", "")
    assert "KONG_PLUGINSERVER_ACE_SOCKET=/usr/local/kong/ace.socket" in text
    assert 'ENTRYPOINT ["/opt/kong-ace/docker-entrypoint.sh"]' in text
