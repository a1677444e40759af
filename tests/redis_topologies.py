"""Real Redis topologies for the tests: a Redis Cluster and a Sentinel-managed primary/replica.

Each runs redis-server processes on free loopback ports in a temporary directory; tests may kill
a primary (SIGKILL) and start it again, after which it rejoins as a replica.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

TIMEOUT_MS = 500  # the limiter's Redis timeouts in these tests, as RedisServer.settings


def free_port(bus: bool = False) -> int:
    """A free loopback port; with bus, one whose cluster bus port (port + 10000) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll check() until it returns a true value (real processes converging, not fake time)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except (redis.exceptions.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Process:
    """One redis-server (or sentinel) process on a loopback port."""

    def __init__(self, port: int, args: list[str], workdir: Path) -> None:
        self.port = port
        self.args = args
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, cwd=self.workdir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), f"redis on port {self.port}", 10)

    def kill(self) -> None:
        """SIGKILL, by pid: no shutdown, no goodbye to clients or replicas."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None


def _server_args(port: int, *extra: str) -> list[str]:
    # No diskless-sync delay (5 s by default): a replica must hold the data before a test kills
    # its primary. Replicas load the primary's data from the socket, never through an RDB file:
    # the servers share one directory, and a server restarted after a kill loaded the `dump.rdb`
    # another server's replica had written, with a previous test's counters (then, promoted, it
    # answered 429 to every request; docs/testing.md). A killed server comes back empty.
    return ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--repl-diskless-sync-delay", "0",
            "--repl-diskless-load", "swapdb", "--dbfilename", f"dump-{port}.rdb", *extra]


def replicas_in_sync(nodes: list[Process]) -> bool:
    """Every running replica among nodes has its link to its primary up."""
    for n in nodes:
        if n.proc is None:
            continue
        info = n.client().info("replication")
        if info["role"] == "slave" and info.get("master_link_status") != "up":
            return False
    return True


def wait_empty(nodes: list[Process]) -> None:
    """Wait until every running server among nodes, replicas included, holds no key."""
    wait_for(lambda: all(n.client().dbsize() == 0 for n in nodes if n.proc is not None),
             "every replica to be empty after FLUSHALL")


class RedisClusterNodes:
    """A Redis Cluster of 3 primaries, each with one replica (6 redis-server processes)."""

    def __init__(self, workdir: Path, primaries: int = 3, replicas: int = 1) -> None:
        self.workdir = workdir
        self.replicas = replicas
        self.nodes = []
        for _ in range(primaries * (1 + replicas)):
            port = free_port(bus=True)
            self.nodes.append(Process(port, _server_args(
                port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
                "--dir", str(workdir)), workdir))

    @property
    def settings(self) -> dict[str, Any]:
        """The `rate_limiting.redis` block for this Cluster (two of its nodes to start from)."""
        return {"cluster_nodes": [{"ip": "127.0.0.1", "port": n.port} for n in self.nodes[:2]],
                "timeout": TIMEOUT_MS}

    def client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes],
                            socket_timeout=2)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Every running node says the cluster is ok and sees every primary with its replicas."""
        def healthy() -> bool:
            running = [n for n in self.nodes if n.proc is not None]
            for n in running:
                info = n.client().cluster("info")
                if info["cluster_state"] != "ok":
                    return False
                nodes = n.client().cluster("nodes")
                connected = [v for v in nodes.values() if v["connected"]
                             or "myself" in v["flags"]]
                if len(connected) < len(running):
                    return False
            return replicas_in_sync(self.nodes)

        wait_for(healthy, "the cluster to be ok")

    def primary_for(self, key: str) -> Process:
        """The node serving the hash slot of key now, as the node itself says."""
        slot = self.client().keyslot(key)
        for n in self.nodes:
            if n.proc is None or not _is_primary(n):
                continue
            for start, end, owner, *_ in _cluster_slots(n.client()):
                if start <= slot <= end and int(owner[1]) == n.port:
                    return n
        raise RuntimeError(f"no primary for slot {slot}")

    def primaries(self) -> list[Process]:
        return [n for n in self.nodes if n.proc is not None and _is_primary(n)]

    def flush(self) -> None:
        """Empty every primary, and wait until every running replica is empty too.

        A server started again after a kill once came back, and was promoted in the next test,
        holding the counters of the test before (the day's counter at its limit): the next test
        then saw nothing but 429s. Waiting here makes such a replica an error of the fixture.
        """
        for n in self.primaries():
            n.client().flushall()
        wait_empty(self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _is_primary(node: Process) -> bool:
    return node.client().info("replication")["role"] == "master"


def _cluster_slots(client: redis.Redis) -> list[Any]:
    return client.execute_command("CLUSTER", "SLOTS")  # [[start, end, [host, port, id], ...]]


class RedisSentinelSet:
    """A primary, one replica and three sentinels monitoring them as `ace`."""

    MASTER = "ace"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        primary_port, replica_port = free_port(), free_port()
        self.servers = [
            Process(primary_port, _server_args(primary_port), workdir),
            Process(replica_port, _server_args(replica_port, "--replicaof", "127.0.0.1",
                                               str(primary_port)), workdir),
        ]
        self.sentinels = []
        for _ in range(3):
            port = free_port()
            conf = workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
                f"sentinel failover-timeout {self.MASTER} 3000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n"
            )
            # redis-server --sentinel is what Debian's redis-sentinel package starts.
            self.sentinels.append(Process(port, ["redis-server", str(conf), "--sentinel"],
                                          workdir))

    @property
    def settings(self) -> dict[str, Any]:
        """The `rate_limiting.redis` block for this Sentinel set."""
        return {"sentinel_master": self.MASTER, "sentinel_role": "master",
                "sentinel_nodes": [{"host": "127.0.0.1", "port": s.port} for s in self.sentinels],
                "timeout": TIMEOUT_MS}

    def primary_address(self) -> tuple[str, int]:
        """Where the sentinels say the primary is."""
        for s in self.sentinels:
            if s.proc is None:
                continue
            try:
                host, port = s.client().sentinel_get_master_addr_by_name(self.MASTER)
                return host, int(port)
            except (redis.exceptions.RedisError, TypeError):
                continue
        raise RuntimeError("no sentinel answers")

    def primary(self) -> Process:
        _, port = self.primary_address()
        return next(p for p in self.servers if p.port == port)

    def start(self) -> None:
        for p in self.servers:
            p.start()
        for s in self.sentinels:
            s.start()
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Sentinels agree on a writable primary that has a replica, and know each other."""
        def healthy() -> bool:
            primary = self.primary()
            if primary.proc is None or not primary.client().set("ace:health", "1"):
                return False
            if primary.client().info("replication")["connected_slaves"] < 1:
                return False
            if not replicas_in_sync(self.servers):
                return False
            for s in self.sentinels:
                state = s.client().sentinel_master(self.MASTER)
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                    return False
                if (state["ip"], int(state["port"])) != ("127.0.0.1", primary.port):
                    return False
            return True

        wait_for(healthy, "the sentinels to agree on a primary with a replica", 60)

    def restart_killed(self) -> None:
        """Start a killed server again, as a replica of the current primary (as the sentinels
        would make it, only sooner)."""
        for p in self.servers:
            if p.proc is None:
                _, port = self.primary_address()
                p.args = _server_args(p.port, "--replicaof", "127.0.0.1", str(port))
                p.start()

    def flush(self) -> None:
        """Empty the primary, and wait until the replica is empty too (as the Cluster's)."""
        self.primary().client().flushall()
        wait_empty(self.servers)

    def stop(self) -> None:
        for p in [*self.sentinels, *self.servers]:
            p.stop()


class Blackhole:
    """A listening socket that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0  # one per connection redis-py opened (it drops one after a timeout)
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            self._open.append(conn)  # kept open, never read or written

    def settings(self, timeout_ms: int) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "timeout": timeout_ms}

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()
