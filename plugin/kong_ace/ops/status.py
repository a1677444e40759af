"""`kong-ace status`: what a running plugin server holds, asked over its own socket.

It speaks Kong's msgpack-RPC (plugin.GetStatus), so it sees what Kong sees: instances and the
config hash each runs, compiled configs, rejected configs, events in flight, rate-limit store
health. Keys this version does not know (newer servers) are shown as they come.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from rich.table import Table

from kong_ace.ops.output import Output

DEFAULT_SOCKET = "/usr/local/kong/ace.socket"  # Kong's and kong-ace-server's default
SOCKET_ENV = "KONG_ACE_SOCKET"
PLUGIN = "ace"
TIMEOUT = 10.0

NO_SERVER = "cannot reach the plugin server at {socket}: {error}"
NO_SERVER_HINT = "pass --socket (or set KONG_ACE_SOCKET) to the path Kong's " \
                 "pluginserver_ace_socket names"
NO_PLUGIN = "the server at {socket} does not serve the '{plugin}' plugin"
FAILING = ("FAIL CLOSED: plugin {plugin}: config {config} rejected ({error}) and no last good "
           "config: Kong answers 500 to every request it handles")
SERVING = ("WARNING: plugin {plugin}: config {config} rejected ({error}); still serving its "
           "last good config {serving}")
EXIT_FAILING = 2  # some plugin answers 500 to everything: a monitor must page

# Keys of the plugin entry rendered by name; anything else is rendered generically.
KNOWN = frozenset({"Name", "Instances", "Events", "Compiled", "Configs", "Stores", "IdPs",
                   "Metrics"})
TOP_KNOWN = frozenset({"Pid", "Plugins", "Greenlets", "Threads", "StartTime", "Uptime"})


def fetch(socket: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """plugin.GetStatus of the server on ``socket``; raises RPCFailure."""
    # Kong's side of the protocol, as the harness speaks it.
    from kong_ace.testing.rpc import KongRPC

    rpc = KongRPC(socket, timeout=timeout)
    try:
        return rpc.call("plugin.GetStatus")  # type: ignore[no-any-return]
    finally:
        rpc.close()


def run(args: argparse.Namespace) -> int:
    """Entry point of `kong-ace status`."""
    from kong_ace.testing.rpc import RPCFailure

    out = Output(args.json)
    socket = args.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    try:
        status = fetch(socket)
    except RPCFailure as exc:
        return out.fail(NO_SERVER.format(socket=socket, error=exc), 1, NO_SERVER_HINT,
                        socket=socket)
    if not isinstance(status, Mapping):
        return out.fail(NO_PLUGIN.format(socket=socket, plugin=PLUGIN), 1)
    plugin = (status.get("Plugins") or {}).get(PLUGIN)
    code = EXIT_FAILING if isinstance(plugin, Mapping) and failing(plugin) else 0
    if out.as_json:
        out.json(_plain(status))
        return code
    if not isinstance(plugin, Mapping):
        return out.fail(NO_PLUGIN.format(socket=socket, plugin=PLUGIN), 1)
    render(out, socket, status, plugin)
    return code


def rejections(plugin: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The plugins whose latest config ACE rejected (GetStatus ``Rejected``)."""
    return [r for r in plugin.get("Rejected") or [] if isinstance(r, Mapping)]


def failing(plugin: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The rejections with no last good config behind them: 500 for every request."""
    return [r for r in rejections(plugin) if not r.get("Serving")]


def headlines(plugin: Mapping[str, Any]) -> list[str]:
    """One line per rejected config in force, fail-closed ones first."""
    lines = [FAILING.format(plugin=r.get("PluginId"), config=short(r.get("ConfigHash")),
                            error=r.get("Error")) for r in failing(plugin)]
    lines += [SERVING.format(plugin=r.get("PluginId"), config=short(r.get("ConfigHash")),
                             error=r.get("Error"), serving=short(r.get("Serving")))
              for r in rejections(plugin) if r.get("Serving")]
    return lines


def render(out: Output, socket: str, status: Mapping[str, Any],
           plugin: Mapping[str, Any]) -> None:
    """The human view: a summary line, then one table per kind of thing held."""
    con = out.console
    now = time.time()
    facts = [f"pid {status.get('Pid', '?')}"]
    if isinstance(status.get("Uptime"), (int, float)):
        facts.append(f"up {duration(status['Uptime'])}")
    facts.append(f"events in flight {plugin.get('Events', '?')}")
    for key in ("Greenlets", "Threads"):
        if key in status:
            facts.append(f"{key.lower()} {status[key]}")
    metrics = plugin.get("Metrics")
    if "Metrics" in plugin:
        facts.append("metrics " + ("off" if metrics is None else "on" + (
            ", application label" if isinstance(metrics, Mapping)
            and metrics.get("Applications") else "")))
    con.print(f"kong-ace plugin server at {socket}: " + ", ".join(facts), markup=False)
    for line in headlines(plugin):
        con.print(line, style="bold red" if line.startswith("FAIL") else "bold yellow",
                  markup=False)

    instances = [i for i in plugin.get("Instances") or [] if isinstance(i, Mapping)]
    table = Table(title=f"Instances ({len(instances)})", title_justify="left")
    for col in ("id", "plugin id", "config hash", "started"):
        table.add_column(col)
    for inst in sorted(instances, key=lambda i: str(i.get("PluginId"))):
        table.add_row(str(inst.get("Id", "")), str(inst.get("PluginId") or "-"),
                      short(inst.get("ConfigHash")), ago(inst.get("StartTime"), now))
    con.print(table)

    configs = [c for c in plugin.get("Configs") or [] if isinstance(c, Mapping)]
    table = Table(title=f"Compiled configs ({plugin.get('Compiled', len(configs))})",
                  title_justify="left")
    for col in ("config hash", "instances", "compile"):
        table.add_column(col)
    for c in configs:
        seconds = c.get("CompileSeconds")
        table.add_row(short(c.get("Hash")), str(c.get("Instances", "")),
                      f"{seconds * 1000:.1f} ms" if isinstance(seconds, (int, float)) else "-")
    con.print(table)

    stores = [s for s in plugin.get("Stores") or [] if isinstance(s, Mapping)]
    if "Stores" in plugin and not stores:
        con.print("Rate-limit stores: in-process counters only (nothing remote to watch)",
                  markup=False)
    elif stores:
        con.print(health_table("Rate-limit stores", "store", "Store", stores, now))
    idps = [s for s in plugin.get("IdPs") or [] if isinstance(s, Mapping)]
    if idps:
        con.print(health_table("Identity providers", "issuer", "Issuer", idps, now))

    for key, value in plugin.items():
        if key not in KNOWN:
            render_other(out, key, value, now)
    for key, value in status.items():
        if key not in TOP_KNOWN:
            render_other(out, key, value, now)


def health_table(title: str, column: str, key: str, rows: list[Mapping[str, Any]],
                 now: float) -> Table:
    """Calls to a dependency (a store, an IdP): healthy, counts, breaker, last error."""
    table = Table(title=f"{title} ({len(rows)})", title_justify="left")
    for col in (column, "healthy", "calls", "errors", "breaker", "last error"):
        table.add_column(col)
    for row in rows:
        last = row.get("LastError")
        error = "-" if not last else f"{ago(last, now)} ({row.get('LastErrorMessage') or '?'})"
        table.add_row(str(row.get(key)), "yes" if row.get("Healthy") else "NO",
                      str(row.get("Calls", 0)), str(row.get("Errors", 0)),
                      str(row.get("Breaker") or "-"), error)
    return table


def render_other(out: Output, key: str, value: Any, now: float) -> None:
    """A key this version does not know: a table for a list of records, else one line."""
    title = words(key)
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        columns: list[str] = []
        for row in value:
            columns += [k for k in row if k not in columns]
        table = Table(title=f"{title} ({len(value)})", title_justify="left")
        for col in columns:
            table.add_column(words(col).lower())
        for row in value:
            table.add_row(*(cell(col, row.get(col), now) for col in columns))
        out.console.print(table)
    elif isinstance(value, list) and not value:
        out.console.print(f"{title}: none", markup=False)
    else:
        out.console.print(f"{title}: {cell(key, value, now)}", markup=False)


def cell(key: str, value: Any, now: float) -> str:
    """One value for a table cell: hashes shortened, times as ages."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith(
            ("Time", "At")) and value > 1e9:
        return ago(value, now)
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return short(value)
    if isinstance(value, (list, Mapping)):
        return str(_plain(value))
    return str(value)


def words(key: str) -> str:
    """``RejectedConfigs`` -> ``Rejected configs``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ")
    return spaced[:1].upper() + spaced[1:].lower()


def short(digest: Any) -> str:
    """The first 12 hex digits of a config hash (enough to tell configs apart)."""
    return digest[:12] if isinstance(digest, str) and digest else "-"


def ago(when: Any, now: float) -> str:
    """``3m 20s ago`` for an epoch time."""
    if not isinstance(when, (int, float)):
        return "-"
    return duration(max(0.0, now - when)) + " ago"


def duration(seconds: float) -> str:
    """``1d 2h``, ``3h 4m``, ``5m 6s``, ``7s``."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s}s" if minutes else f"{s}s"


def _plain(value: Any) -> Any:
    # msgpack may hand back bytes (non-UTF-8 strings): JSON needs text.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
