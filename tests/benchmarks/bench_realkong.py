"""ACE on the real Kong 3.9.1 beside Kong's own Lua stack, CPU per request (issue #21, SPEC §14).

Run: ``.venv/bin/python tests/benchmarks/bench_realkong.py`` (about 4 minutes; needs the real
Kong, see tests/realkong, and ``wrk``: ``apt-get install wrk``).

Every variant is its own Kong node (DB-less, traditional router, ``request-termination``
answering 200 behind the plugins, so no upstream is involved), all started at once and driven
in interleaved rounds by ``wrk`` (8 connections, one allowed request repeated). Per variant
and round: CPU time (utime+stime, children included, from /proc) of the nginx workers and of
the plugin server before and after, divided by the requests served; medians over the rounds.

Sections: ``main`` (1 nginx worker: floor, Lua stack, no-op and ace in both modes), ``workers2``
(the same with 2 workers), ``redis`` (ace with ``sync_rate: 0`` beside rate-limiting with
``policy: redis``, against a redis-server of our own on a free port), and on request ``rpc``
(a bare server making 0-3 PDK calls that do nothing: what one plugin-server message costs,
whatever the plugin does). Not part of pytest:
targets are printed next to the figures, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugin"))

from kong_ace.core.catalog import hash_key  # noqa: E402
from tests.realkong.kong import SKIP_REASON, KongNode, find_kong  # noqa: E402
from tests.redis_server import running  # noqa: E402

KEY = "bench-key-0123456789"
PATH = "/flights/v1/flights/BA1"
BIG = 10**9
NOOP_PLUGIN = "kong_ace.testing.noop"
LUA = "key-auth+acl+rate-limiting"
BARE = "bare RPC server, companion mode (3 messages, no plugin)"
RPC = "bare RPC server, "
TARGETS = {"ace/Lua companion": 1.0, "ace/Lua classic": 1.6, "ace-noop companion µs": 20.0}


VENV = ROOT / ".venv" / "bin"
SHARED_KONG = Path("/tmp/realkong")  # ../shared/realkong/install.sh puts it there


# --- Kong configurations ----------------------------------------------------------------------

def _declarative(plugins: list[dict[str, Any]], consumers: list[dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    # request-termination (priority 2) runs after every plugin measured here and answers 200:
    # the request never leaves Kong, so the figures are the gateway's alone.
    return {
        "_format_version": "3.0",
        "services": [{"name": "bench", "url": "http://127.0.0.1:9",
                      "routes": [{"name": "all", "paths": ["/"], "strip_path": False}]}],
        "plugins": [*plugins, {"name": "request-termination",
                               "config": {"status_code": 200, "message": "ok"}}],
        "consumers": consumers or [],
    }


def ace_config(rate_limiting: dict[str, Any] | None = None) -> dict[str, Any]:
    """One API from specs/, one package with a limit no run reaches, one application."""
    config: dict[str, Any] = {
        "match_policy": "required",
        "specs_dir": str(ROOT / "specs"),
        "apis": [{"name": "flights", "spec_file": "flights.yaml"}],
        "packages": [{"name": "all", "operations": [{"api": "flights"}],
                      "rate_limits": [{"limit": BIG, "duration": "minutes"}]}],
        "applications": [{"id": "bench",
                          "credentials": [{"key_hash": f"sha256:{hash_key(KEY)}"}],
                          "registrations": [{"package": "all", "status": "approved"}]}],
    }
    if rate_limiting:
        config["rate_limiting"] = rate_limiting
    return config


def lua_stack(redis_port: int | None = None) -> dict[str, Any]:
    """key-auth + acl + rate-limiting (local, or redis) with one consumer holding the key."""
    limits: dict[str, Any] = {"minute": BIG, "policy": "local"}
    if redis_port is not None:
        limits.update(policy="redis", redis={"host": "127.0.0.1", "port": redis_port})
    return _declarative(
        [{"name": "key-auth", "config": {"key_names": ["apikey"]}},
         {"name": "acl", "config": {"allow": ["bench"]}},
         {"name": "rate-limiting", "config": limits}],
        consumers=[{"username": "bench", "keyauth_credentials": [{"key": KEY}],
                    "acls": [{"group": "bench"}]}])


def ace_node(config: dict[str, Any], *, mode: str, plugin: str | None = None,
             workers: int = 1, code: Path | None = None) -> KongNode:
    """A Kong running ``ace`` (or the no-op plugin in its place) globally.

    ``code``: a ``plugin/`` folder of another revision (``--compare``) to serve instead of
    this checkout's: its Python package for the server, its Lua companions for Kong.
    """
    args = ["--plugin", plugin] if plugin else []
    conf = {"pluginserver_ace_query_cmd": f"{VENV}/kong-ace-server --dump {' '.join(args)}"}
    env = {}
    if code is not None:
        conf["lua_package_path"] = f"{code}/?.lua;;"
        env["PYTHONPATH"] = str(code)
    return KongNode(_declarative([{"name": "ace", "config": config}]), mode=mode,
                    workers=workers, server_args=args, conf=conf, env=env)


class BareNode(KongNode):
    """A Kong whose plugin server is bare_server.py: the floor of the two-PDK-call design.

    ``calls``: instead, that many PDK calls that do nothing (bare_server.py's second argument).
    """

    SCRIPT = str(Path(__file__).with_name("bare_server.py"))

    def __init__(self, *args: Any, calls: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = calls

    def server_command(self) -> list[str]:
        extra = [] if self.calls is None else [str(self.calls)]
        return [str(VENV / "python"), self.SCRIPT, str(self.socket), *extra]

    def server_pids(self) -> list[int]:
        mark = str(self.socket)
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    cmd = (entry / "cmdline").read_bytes().split(b"\0")
                    if self.SCRIPT.encode() in cmd and mark.encode() in cmd:
                        found.append(int(entry.name))
        return found


def make_variants(workers: int, old: Path | None, ref: str) -> list[Variant]:
    """The main table's variants; with ``old``, each Python one also as of ``ref``."""
    def node(config: dict[str, Any], plugin: str | None, mode: str,
             code: Path | None) -> Callable[[], KongNode]:
        return lambda: ace_node(config, mode=mode, plugin=plugin, workers=workers, code=code)

    found = [
        Variant("floor (request-termination only)",
                lambda: KongNode(_declarative([]), mode="classic", workers=workers,
                                 server="none")),
        Variant(LUA, lambda: KongNode(lua_stack(), mode="classic", workers=workers,
                                      server="none")),
    ]
    if workers == 1:
        found.append(Variant(BARE, lambda: BareNode(
            _declarative([{"name": "ace", "config": {}}]), mode="companion",
            conf={"pluginserver_ace_query_cmd": f"{VENV}/kong-ace-server --dump --plugin "
                                                f"{NOOP_PLUGIN}"})))
    for mode in ("companion", "classic"):
        for code, suffix in [(None, ""), *([(old, f" @{ref}")] if old else [])]:
            found.append(Variant(f"no-op, {mode} mode{suffix}",
                                 node({}, NOOP_PLUGIN, mode, code)))
            found.append(Variant(f"ace, {mode} mode{suffix}", node(ace_config(), None, mode, code)))
    return found


ONETRIP = Path(__file__).with_name("onetrip")
ONETRIP_NAME = "one round trip, own cosocket + cjson (proposed design's floor)"


class OneTripNode(KongNode):
    """Kong with bench-onetrip and onetrip/server.py: the floor of the one-round-trip design."""

    def __init__(self, workers: int = 1) -> None:
        super().__init__(_declarative([]), mode="classic", workers=workers, server="none")
        self.trip_socket = str(self.prefix / "onetrip.sock")
        self.declarative["plugins"].insert(0, {"name": "bench-onetrip",
                                               "config": {"socket": self.trip_socket}})
        self.extra_conf.update(plugins="bundled,bench-onetrip",
                               lua_package_path=f"{ONETRIP}/?.lua;;")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> KongNode:
        self.proc = subprocess.Popen([str(VENV / "python"), str(ONETRIP / "server.py"),
                                      self.trip_socket], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not Path(self.trip_socket).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("onetrip/server.py did not listen")
            time.sleep(0.05)
        return super().start()

    def server_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def stop(self) -> None:
        super().stop()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def rpc_variants() -> list[Variant]:
    """The floor, then the bare server making 0-3 empty PDK calls (1-4 messages), no companions:
    what one plugin-server message costs Kong and the server, whatever the plugin does."""
    def bare(calls: int) -> Callable[[], KongNode]:
        return lambda: BareNode(
            _declarative([{"name": "ace", "config": {}}]), mode="classic", calls=calls,
            conf={"pluginserver_ace_query_cmd": f"{VENV}/kong-ace-server --dump --plugin "
                                                f"{NOOP_PLUGIN}"})

    return [Variant("floor (request-termination only)",
                    lambda: KongNode(_declarative([]), mode="classic", server="none")),
            Variant(LUA, lambda: KongNode(lua_stack(), mode="classic", server="none")),
            *(Variant(f"{RPC}{n + 1} message{'s' if n else ''} ({n} PDK calls)", bare(n))
              for n in range(4)),
            Variant(BARE, lambda: BareNode(
                _declarative([{"name": "ace", "config": {}}]), mode="companion",
                conf={"pluginserver_ace_query_cmd": f"{VENV}/kong-ace-server --dump --plugin "
                                                    f"{NOOP_PLUGIN}"})),
            Variant(ONETRIP_NAME, OneTripNode)]


def print_slope(variants: list[Variant]) -> None:
    """The least-squares cost of one more message, Kong's and the server's (medians)."""
    points = [(i + 1, v) for i, v in enumerate(v for v in variants if v.name.startswith(RPC))]
    xs = [x for x, _ in points]
    mean_x = statistics.mean(xs)
    for key in ("kong", "server", "total"):
        ys = [v.median(key) for _, v in points]
        slope = (sum((x - mean_x) * (y - statistics.mean(ys)) for x, y in zip(xs, ys, strict=True))
                 / sum((x - mean_x) ** 2 for x in xs))
        print(f"- one more message, {key}: {slope:+.0f} µs/req")
    floor = next(v for v in variants if v.name.startswith("floor"))
    lua = next(v for v in variants if v.name == LUA)
    print(f"- Lua stack above the floor: {lua.median('total') - floor.median('total'):.0f} µs/req")


# --- measuring --------------------------------------------------------------------------------

CLK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children, from /proc."""
    try:
        f = _stat(pid)
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / CLK


def cpu_of(pids: list[int]) -> float:
    """Total CPU seconds of ``pids``."""
    return sum(cpu_seconds(p) for p in pids)


WRK_REQUESTS = re.compile(r"(\d+) requests in")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_ERRORS = re.compile(r"Socket errors: (.*)")
WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT = {"us": 1.0, "ms": 1e3, "s": 1e6}


def wrk(url: str, seconds: float, connections: int = 8) -> dict[str, float]:
    """One wrk run on ``url`` with the key header: requests, req/s, p50 and p99 (µs)."""
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency",
         "-H", f"apikey: {KEY}", url],
        capture_output=True, text=True, check=True).stdout
    n = int(WRK_REQUESTS.search(out).group(1))  # type: ignore[union-attr]
    bad = WRK_NON2XX.search(out)
    if bad or WRK_ERRORS.search(out):
        raise AssertionError(f"{url}: not every request was answered 200:\n{out}")
    lat = {q: float(v) * UNIT[u] for q, v, u in WRK_LATENCY.findall(out)}
    return {"requests": n, "p50": lat["50"], "p99": lat["99"]}


def wait_allowed(url: str, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200 (the plugin server starts after Kong)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"apikey": KEY})
    while True:
        try:
            urllib.request.urlopen(request, timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Variant:
    """One Kong node under measurement and its figures per round."""

    def __init__(self, name: str, make: Callable[[], KongNode]) -> None:
        self.name = name
        self.make = make
        self.node: KongNode = None  # type: ignore[assignment]  # made by start()
        self.rounds: list[dict[str, float]] = []

    def start(self, stack: ExitStack) -> None:
        """Make and start the node (again, on fresh ports, if another process took one)."""
        for attempt in range(3):
            self.node = self.make()
            stack.callback(self.node.cleanup)  # stops it and removes its prefix
            try:
                self.node.start()
                return
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == 2:
                    raise

    def measure(self, seconds: float) -> None:
        """One round: wrk on the node, CPU of its workers and plugin server before and after."""
        workers, servers = self.node.worker_pids(), self.node.server_pids()
        k0, s0, t0 = cpu_of(workers), cpu_of(servers), time.perf_counter()
        r = wrk(self.node.proxy_url + PATH, seconds)
        wall = time.perf_counter() - t0
        k1, s1 = cpu_of(workers), cpu_of(servers)
        n = r["requests"]
        self.rounds.append({"kong": (k1 - k0) / n * 1e6, "server": (s1 - s0) / n * 1e6,
                            "total": (k1 - k0 + s1 - s0) / n * 1e6, "rps": n / wall,
                            "p50": r["p50"], "p99": r["p99"]})

    def median(self, key: str) -> float:
        """The median of ``key`` over the rounds."""
        return statistics.median(r[key] for r in self.rounds)

    def spread(self, key: str) -> str:
        """min–max of ``key`` over the rounds."""
        values = [r[key] for r in self.rounds]
        return f"{min(values):.0f}–{max(values):.0f}"


def run_section(title: str, variants: list[Variant], rounds: int, seconds: float,
                ratios: list[tuple[str, str, str]]) -> None:
    """Warm every variant, run interleaved rounds, print the table and the ratios."""
    for v in variants:
        wait_allowed(v.node.proxy_url + PATH)
        wrk(v.node.proxy_url + PATH, 1)  # instances started, caches and JIT warm
    for i in range(rounds):
        order = variants if i % 2 == 0 else variants[::-1]  # no variant always first
        for v in order:
            v.measure(seconds)
    print(f"\n## {title} ({rounds} rounds x {seconds:g} s, wrk 8 connections; medians, "
          "min–max in brackets)\n")
    print("| variant | Kong CPU µs/req | plugin server µs/req | total µs/req | req/s "
          "| p50 µs | p99 µs |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        server = (f"{v.median('server'):.0f} ({v.spread('server')})"
                  if v.median("server") > 0 else "–")
        print(f"| {v.name} | {v.median('kong'):.0f} ({v.spread('kong')}) | {server} "
              f"| **{v.median('total'):.0f}** ({v.spread('total')}) | {v.median('rps'):.0f} "
              f"| {v.median('p50'):.0f} | {v.median('p99'):.0f} |")
    by_name = {v.name: v for v in variants}
    print()
    for label, a, b in ratios:
        if b.endswith(" µs"):  # a difference, not a ratio
            diff = by_name[a].median("total") - by_name[b[:-3]].median("total")
            paired = statistics.median(x["total"] - y["total"] for x, y in
                                       zip(by_name[a].rounds, by_name[b[:-3]].rounds,
                                           strict=True))
            print(f"- {label}: {diff:+.0f} µs/req (paired per round {paired:+.0f})")
            continue
        ratio = by_name[a].median("total") / by_name[b].median("total")
        paired = statistics.median(x["total"] / y["total"] for x, y in
                                   zip(by_name[a].rounds, by_name[b].rounds, strict=True))
        print(f"- {label}: {ratio:.2f}× (paired per round {paired:.2f}×)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--sections", default="main,workers2,redis",
                   help="comma-separated: main, workers2, redis, rpc (the cost of one message; "
                        "default: all but rpc)")
    p.add_argument("--compare", metavar="REF", default="",
                   help="also run the Python variants with the plugin/ folder of git REF "
                        "(before/after of a change in one run)")
    p.add_argument("--only", default="", metavar="NAMES",
                   help="comma-separated substrings: run only the variants whose name has one")
    args = p.parse_args(argv)
    stack = ExitStack()
    with stack:
        return _run(args, stack)


def _run(args: argparse.Namespace, stack: ExitStack) -> int:
    """Run the chosen sections; ``stack`` holds what lives as long as the run."""
    if "KONG_ACE_REAL_KONG" not in os.environ and (SHARED_KONG / "env.sh").exists():
        os.environ["KONG_ACE_REAL_KONG"] = str(SHARED_KONG)
    if find_kong() is None:
        print(SKIP_REASON, file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    sections = set(args.sections.split(","))
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"# bench_realkong: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs ({cpu}), Kong 3.9.1")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    ratios_for = [("ace companion / Lua stack", "ace, companion mode", LUA),
                  ("ace classic / Lua stack", "ace, classic mode", LUA),
                  ("ace companion / no-op companion", "ace, companion mode",
                   "no-op, companion mode"),
                  ("ace companion above the no-op", "ace, companion mode",
                   "no-op, companion mode µs"),
                  ("ace classic / no-op classic", "ace, classic mode", "no-op, classic mode"),
                  ("ace classic above the no-op", "ace, classic mode", "no-op, classic mode µs")]
    old = None
    if args.compare:
        old = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="i21-compare-")))
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.compare, "plugin"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        old = old / "plugin"
        def at(name: str) -> str:
            if name == LUA:
                return name
            if name.endswith(" µs"):
                return f"{name[:-3]} @{args.compare} µs"
            return f"{name} @{args.compare}"

        ratios_for += [(f"{label} @{args.compare}", at(a), at(b)) for label, a, b in ratios_for]
        ratios_for += [(f"ace companion now / @{args.compare}", "ace, companion mode",
                        f"ace, companion mode @{args.compare}"),
                       (f"no-op companion now / @{args.compare}", "no-op, companion mode",
                        f"no-op, companion mode @{args.compare}"),
                       (f"ace classic now / @{args.compare}", "ace, classic mode",
                        f"ace, classic mode @{args.compare}")]
    only = [x for x in args.only.split(",") if x]
    for workers, section in ((1, "main"), (2, "workers2")):
        if section not in sections:
            continue
        with ExitStack() as nodes:
            chosen = [v for v in make_variants(workers, old, args.compare)
                      if not only or any(o in v.name for o in only)]
            for v in chosen:
                v.start(nodes)
            names = {v.name for v in chosen}
            run_section(f"{workers} nginx worker{'s' if workers > 1 else ''}", chosen,
                        args.rounds, args.seconds,
                        [r for r in ratios_for if r[1] in names and r[2].removesuffix(" µs")
                         in names])
    if "rpc" in sections:
        with ExitStack() as nodes:
            chosen = rpc_variants()
            for v in chosen:
                v.start(nodes)
            run_section("Plugin-server messages (1 nginx worker, no companions)", chosen,
                        args.rounds, args.seconds, [])
            print_slope(chosen)
    if "redis" in sections:
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="i21-redis-")))
            redis = stack.enter_context(running(workdir))
            sync = {"sync_rate": 0, "redis": {"host": "127.0.0.1", "port": redis.port}}
            variants = [
                Variant("key-auth+acl+rate-limiting (redis)",
                        lambda: KongNode(lua_stack(redis.port), mode="classic", server="none")),
                Variant("ace, companion mode, redis sync_rate 0",
                        lambda: ace_node(ace_config(sync), mode="companion")),
            ]
            for v in variants:
                v.start(stack)
            run_section("Redis (1 nginx worker)", variants, args.rounds, args.seconds,
                        [("ace redis / Lua stack redis", variants[1].name, variants[0].name)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
