"""`kong-ace check kong.yml`: compile the ace config and show which route carries each operation."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from kong_ace.core.strategies import DEFAULT, NONE, KeyStrategy, TokenStrategy
from kong_ace.errors import ConfigError
from kong_ace.ops import migrations
from kong_ace.ops.coverage import SAMPLES, Coverage, CoverageAnalyser
from kong_ace.ops.deckfile import DeckFileError, Route
from kong_ace.ops.loader import Loaded, Source, compile_source, hint, read
from kong_ace.ops.output import Output

EXIT_OK, EXIT_UNMATCHED, EXIT_CONFIG = 0, 1, 2

EMPTY_PACKAGE = "package '{name}' has no operations"
NO_APPROVED = "application '{app}' has no approved registration: it can call nothing"
DUPLICATE_KEY = "key_hash {digest} appears {n} times: {places}"
UNMATCHED_SUMMARY = "{n} unmatched operation(s): no Kong route carries them, Kong answers 404"
PARTIAL = ("operation '{op}' is only partly carried: for some hosts, route {routes} takes some "
           "parameter values and not others (values tried: {samples})")
IDLE_PATH = ("route '{route}' path {path} carries no API operation: {effect}")
IDLE_REQUIRED = "with match_policy required, ACE answers 404 to every request on it"
IDLE_IF_PRESENT = "requests on it pass through without ACE (match_policy if_present)"
NO_SIGNING_KEYS = ("auth strategy '{name}': no signing keys from issuer {issuer} yet ({error}): "
                   "its tokens are refused until a refresh succeeds")
UNUSED_STRATEGY = "auth strategy '{name}' is used by no package or API"
NO_CLIENT_IDS = ("auth strategy '{name}' ({issuer}) admits packages/APIs, but no application "
                 "has client_ids")
MONITORED = ("monitor mode: {n} of {total} operations are only monitored (requests matching no "
             "operation: {top})")
STATUS_STYLE = {"matched": "green", "partial": "yellow", "unmatched": "bold red"}


def duplicate_keys(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Key hashes that appear more than once across all applications, with their places."""
    seen: dict[str, list[str]] = {}
    apps = config.get("applications")
    for i, app in enumerate(apps if isinstance(apps, list) else []):
        creds = app.get("credentials") if isinstance(app, Mapping) else None
        for j, cred in enumerate(creds if isinstance(creds, list) else []):
            digest = cred.get("key_hash") if isinstance(cred, Mapping) else None
            if isinstance(digest, str):
                place = f"applications[{i}].credentials[{j}]"
                seen.setdefault(digest.lower(), []).append(place)
    return [{"key_hash": d, "places": p} for d, p in seen.items() if len(p) > 1]


def strategies(loaded: Loaded) -> list[dict[str, Any]]:
    """Each auth strategy, what it checks, and the packages and APIs that use it."""
    auth = loaded.enforcer.auth
    conf = auth.config
    out = []
    for name, s in [*conf.strategies.items(), (NONE, None)]:
        entry: dict[str, Any] = {
            "name": name, "type": getattr(s, "type", NONE),
            "packages": [p for p, n in conf.packages.items() if n == name],
            "apis": [a for a, n in conf.apis.items() if n == name]}
        if isinstance(s, KeyStrategy):
            entry["key_names"] = list(s.key_names)
        elif isinstance(s, TokenStrategy):
            keys = auth.key_sets[s.issuer]
            entry.update(issuer=s.issuer, jwks_uri=keys.jwks_uri, inline_jwks=keys.inline,
                         audience=list(s.audience), scopes=list(s.scopes),
                         credential_claim=list(s.credential_claim),
                         algorithms=sorted(s.algorithms), leeway=s.leeway,
                         signing_keys=len(keys.keys), jwks_error=keys.error)
        if name == NONE and not (entry["packages"] or entry["apis"]):
            continue
        out.append(entry)
    return out


def _strategy_findings(loaded: Loaded, listed: list[dict[str, Any]]) -> list[str]:
    out = []
    has_clients = bool(loaded.enforcer.auth.config.client_ids)
    for e in listed:
        used = e["packages"] or e["apis"]
        if not used and e["name"] != DEFAULT:
            out.append(UNUSED_STRATEGY.format(name=e["name"]))
        if e["type"] == "openid_connect":
            if not e["signing_keys"]:
                out.append(NO_SIGNING_KEYS.format(name=e["name"], issuer=e["issuer"],
                                                  error=e["jwks_error"] or "empty JWKS"))
            if used and not has_clients:
                out.append(NO_CLIENT_IDS.format(name=e["name"], issuer=e["issuer"]))
    return out


def findings(loaded: Loaded, coverage: list[Coverage], analyser: CoverageAnalyser) -> list[str]:
    """Everything an operator should look at, besides unmatched operations."""
    cat = loaded.enforcer.catalog
    out = [EMPTY_PACKAGE.format(name=n) for n, p in cat.packages.items() if not p.op_uids]
    out += [NO_APPROVED.format(app=a.id) for a in cat.applications.values()
            if not any(r.status == "approved" for r in a.registrations)]
    out += [PARTIAL.format(op=c.operation.id, routes=_routes_text(c.routes),
                           samples=", ".join(SAMPLES))
            for c in coverage if c.status == "partial"]
    effect = IDLE_REQUIRED if cat.match_required else IDLE_IF_PRESENT
    out += [IDLE_PATH.format(route=m.route.label, path=m.path or "(any)", effect=effect)
            for m in analyser.idle_paths()]
    out += _strategy_findings(loaded, strategies(loaded))
    out += migrations.findings(migrations.registrations(cat, time.time()))
    if cat.monitoring:
        watched = len(cat.monitored_ops)
        out.append(MONITORED.format(n=watched, total=len(coverage), top=cat.enforcement))
    return out + analyser.warnings


def _routes_text(routes: list[Route], sep: str = ", ") -> str:
    if sep == "\n":  # table cell: hosts on their own line keep the column narrow
        return sep.join(r.label + "".join(f"\n  host {h}" for h in r.hosts) for r in routes)
    return sep.join(r.label + (f" [{' '.join(r.hosts)}]" if r.hosts else "") for r in routes)


def _route_json(r: Route) -> dict[str, Any]:
    return {"name": r.label, "service": r.service.label if r.service else None,
            "paths": list(r.paths), "methods": list(r.methods), "hosts": list(r.hosts),
            "strip_path": r.strip_path}


def _dup_text(dups: list[dict[str, Any]]) -> list[str]:
    return [DUPLICATE_KEY.format(digest=d["key_hash"], n=len(d["places"]),
                                 places=", ".join(d["places"])) for d in dups]


def run(args: argparse.Namespace) -> int:
    """The check command."""
    out = Output(args.json)
    try:
        src: Source = read(args.file, args.specs_dir)
    except (DeckFileError, ConfigError) as exc:
        return out.fail(str(exc), EXIT_CONFIG, place=exc.place)
    dups = duplicate_keys(src.config)
    place = f"{src.plugin.place}.config"
    try:
        loaded = compile_source(src)
    except ConfigError as exc:
        if args.json:
            out.json({"error": str(exc), "place": exc.place, "config": place,
                      "duplicate_keys": dups,
                      "hint": hint(src.config, args.specs_dir is not None, exc)})
            return EXIT_CONFIG
        for line in _dup_text(dups):
            out.errors.print(f"duplicate key: {line}", style="red", markup=False)
        return out.fail(str(exc), EXIT_CONFIG, hint(src.config, args.specs_dir is not None, exc))
    analyser = CoverageAnalyser(loaded.enforcer, loaded.router)
    coverage = analyser.analyse()
    notes = findings(loaded, coverage, analyser)
    spec_warnings = loaded.enforcer.warnings
    unmatched = [c for c in coverage if c.status == "unmatched"]
    code = EXIT_UNMATCHED if args.strict and unmatched else EXIT_OK
    if args.json:
        out.json(_as_json(loaded, analyser, coverage, notes, spec_warnings, dups, place))
        return code
    _render(out, loaded, coverage, notes, spec_warnings, place)
    return code


def _as_json(loaded: Loaded, analyser: CoverageAnalyser, coverage: list[Coverage],
             notes: list[str],
             spec_warnings: list[str], dups: list[dict[str, Any]], place: str) -> dict[str, Any]:
    cat = loaded.enforcer.catalog
    return {
        "file": str(loaded.deck.path),
        "config": place,
        "operations": [
            {"api": c.operation.api, "id": c.operation.id, "method": c.operation.method,
             "path": c.operation.path, "status": c.status,
             "routes": [_route_json(r) for r in c.routes], "packages": c.packages,
             "reason": c.reason}
            for c in coverage
        ],
        "unmatched": [c.operation.id for c in coverage if c.status == "unmatched"],
        "empty_packages": [n for n, p in cat.packages.items() if not p.op_uids],
        "applications_without_approved_registration": [
            a.id for a in cat.applications.values()
            if not any(r.status == "approved" for r in a.registrations)],
        "duplicate_keys": dups,
        "deprecated_registrations": migrations.registrations(cat, time.time()),
        "monitored_operations": [op.id for op in cat.operations()
                                 if op.uid in cat.monitored_ops],
        "auth_strategies": strategies(loaded),
        "idle_route_paths": [{"route": m.route.label, "path": m.path}
                             for m in analyser.idle_paths()],
        "findings": notes,
        "file_warnings": loaded.warnings,
        "spec_warnings": spec_warnings,
    }


def _render_strategies(out: Output, loaded: Loaded) -> None:
    listed = strategies(loaded)
    if [e["name"] for e in listed] == [DEFAULT]:
        return  # API keys only: nothing to add to today's report
    table = Table(title="Auth strategies", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for col in ("Strategy", "Type", "Checks", "Packages", "APIs"):
        table.add_column(col, max_width=48 if col == "Checks" else None)
    for e in listed:
        if e["type"] == "openid_connect":
            checks = f"issuer {e['issuer']}\n{e['signing_keys']} signing key(s)"
            if e["jwks_error"]:
                checks += f" (last fetch: {e['jwks_error']})"
            if e["scopes"]:
                checks += f"\nscopes {' '.join(e['scopes'])}"
        elif e["type"] == "key_auth":
            checks = "keys in " + ", ".join(e["key_names"])
        else:
            checks = "open: no application"
        table.add_row(e["name"], e["type"], Text(checks), "\n".join(e["packages"]) or "-",
                      "\n".join(e["apis"]) or "-")
    out.console.print(table)


def _render(out: Output, loaded: Loaded, coverage: list[Coverage], notes: list[str],
            spec_warnings: list[str], place: str) -> None:
    cat = loaded.enforcer.catalog
    c = out.console
    c.print(f"{loaded.deck.path}: ace plugin at {place}: {len(cat.apis)} APIs, "
            f"{len(coverage)} operations, {len(cat.packages)} packages, "
            f"{len(cat.applications)} applications", markup=False)
    table = Table(title="Operations and the Kong routes that carry them", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("API", "Operation", "Method", "Path", "Route", "Service", "Packages", "Status"):
        # Only the Route column wraps: it holds the reason when an operation is unmatched.
        table.add_column(col, no_wrap=col != "Route", max_width=48 if col == "Route" else None)
    for cov in coverage:
        op = cov.operation
        services = dict.fromkeys(r.service.label for r in cov.routes if r.service)
        route = Text(_routes_text(cov.routes, "\n")) if cov.routes else Text(cov.reason or "",
                                                                       style="red")
        table.add_row(op.api, op.id, op.method, op.path, route, ", ".join(services),
                      "\n".join(cov.packages) or "-",
                      Text(cov.status, style=STATUS_STYLE[cov.status]))
    c.print(table)
    _render_strategies(out, loaded)
    unmatched = [cov for cov in coverage if cov.status == "unmatched"]
    if unmatched:
        c.print(UNMATCHED_SUMMARY.format(n=len(unmatched)), style="bold red", markup=False)
    else:
        c.print(f"all {len(coverage)} operations are carried by a route", style="green")
    for title, lines in (("warnings", loaded.warnings + notes),
                         ("spec validation warnings", spec_warnings)):
        if lines:
            c.print(f"\n{title}:", style="bold yellow")
            for line in lines:
                c.print(f"  - {line}", style="yellow", markup=False)
