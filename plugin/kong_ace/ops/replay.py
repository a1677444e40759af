"""`kong-ace replay --config NEW LOG...`: re-decide recorded traffic under a changed config.

Reads Kong `file-log` / `http-log` JSON records (one per line; a line holding a JSON array, an
http-log batch, is several records; gzip files are read as such). Every record is decided again
by the new config, at the time it happened (``started_at``), so rate limits count as they did.
The caller is who the record's ``ace`` summary names (``application``; else Kong's
``consumer``): keys in the log are never used. The report counts the outcome changes per
application and operation, with a few examples each, then totals.

Outcomes: ``200`` ACE let the request through, ``403`` (etc.) ACE answered that status,
``(403)`` monitor mode let it through and enforcement would have answered 403.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from kong_ace.core.decision import Decision, Request
from kong_ace.core.enforcer import Enforcer
from kong_ace.errors import ConfigError
from kong_ace.gateway.request_line import parse_query, unescape
from kong_ace.ops.deckfile import DeckFileError
from kong_ace.ops.loader import read
from kong_ace.ops.output import Output

EXIT_SAME, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2
EXAMPLES = 3  # example requests kept per (application, operation, change)
MALFORMED_KEPT = 20  # malformed lines listed by number (all are counted)
NO_APPLICATION = "(none)"  # the summary names no application
NO_OPERATION = "(no operation)"
ADMITTED = "200"
REDACTED = "REDACTED"
PROGRESS_EVERY = 20_000  # records between progress-bar updates
GZIP_MAGIC = b"\x1f\x8b"

BAD_JSON = "not JSON: {error}"
NOT_A_RECORD = "not a Kong log record (needs request.method, request.uri and started_at)"
NO_SUMMARY = "no ace summary (logged before ACE, by an ace-guard 503, or without log_summary)"


class Clock:
    """The replay's clock: the time of the record being decided."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def label(decision: Decision) -> str:
    """The outcome of a decision: ``200``, the status ACE answered, or ``(status)``."""
    would = decision.would_deny
    if would is not None:
        return f"({would.status})"
    return ADMITTED if decision.allowed else str(decision.status)


def logged_label(summary: dict[str, Any]) -> str | None:
    """The outcome an ``ace`` log summary records, or None if it is not one."""
    outcome = summary.get("outcome")
    if outcome in ("allowed", "passed"):
        return ADMITTED
    status = summary.get("status")
    if type(status) is not int:
        return None
    if outcome == "denied":
        return str(status)
    return f"({status})" if outcome == "would_deny" else None


def admitted(outcome: str) -> bool:
    """Whether the client's request went upstream (monitor mode included)."""
    return outcome == ADMITTED or outcome.startswith("(")


def build_enforcer(path: str, specs_dir: str | None, clock: Clock) -> Enforcer:
    """The ace config of a kong.yml, with in-memory exact counters on the replay's clock."""
    src = read(path, specs_dir)
    config = dict(src.config)
    rl = dict(config.get("rate_limiting") or {})
    for key in ("sync_rate", "redis"):  # replayed counts are exact and local
        rl.pop(key, None)
    config["rate_limiting"] = rl
    return Enforcer(config, clock=clock, base_dir=src.deck.path.resolve().parent)


@dataclass
class Group:
    """The outcome changes of one application on one operation."""

    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Report:
    """What a replay found."""

    records: int = 0
    decided: int = 0
    unchanged: int = 0
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)
    no_summary: int = 0
    no_summary_examples: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    malformed_lines: list[dict[str, Any]] = field(default_factory=list)

    def totals(self) -> Counter[tuple[str, str]]:
        """Every change, over all groups."""
        out: Counter[tuple[str, str]] = Counter()
        for g in self.groups.values():
            out.update(g.changes)
        return out

    def refused(self) -> int:
        """Requests that went upstream before and would be refused now."""
        return sum(n for (a, b), n in self.totals().items() if admitted(a) and not admitted(b))

    def as_json(self) -> dict[str, Any]:
        """The --json document."""
        return {
            "changes": [
                {"application": app, "operation": op, "from": a, "to": b, "count": n,
                 "examples": g.examples.get((a, b), [])}
                for (app, op), g in sorted(self.groups.items())
                for (a, b), n in sorted(g.changes.items())
            ],
            "totals": {"records": self.records, "decided": self.decided,
                       "unchanged": self.unchanged,
                       "changed": sum(self.totals().values()),
                       "by_change": {f"{a}->{b}": n for (a, b), n in
                                     sorted(self.totals().items())},
                       "admitted_now_refused": self.refused(),
                       "no_summary": self.no_summary, "malformed": self.malformed},
            "no_summary_examples": self.no_summary_examples,
            "malformed_lines": self.malformed_lines,
        }


class Replayer:
    """Feeds log records through the new config (and the baseline's, if given)."""

    def __init__(self, new: Enforcer, clock: Clock, baseline: Enforcer | None = None,
                 examples: int = EXAMPLES) -> None:
        self.new = new
        self.baseline = baseline
        self.clock = clock
        self.examples = examples
        self.report = Report()
        names = set(new.catalog.key_names)
        if baseline is not None:
            names |= set(baseline.catalog.key_names)
        self._key_names = names

    def feed_line(self, line: bytes | str, where: tuple[str, int]) -> None:
        """One line of a log: a record, an array of records, or something to report."""
        try:
            data = json.loads(line)
        except ValueError as exc:
            self._malformed(where, BAD_JSON.format(error=exc))
            return
        if type(data) is list:
            for rec in data:
                self.feed(rec, where)
        else:
            self.feed(data, where)

    def feed(self, rec: Any, where: tuple[str, int]) -> None:
        """Re-decide one record."""
        report = self.report
        try:
            req, started = _request(rec)
        except (TypeError, KeyError, AttributeError, ValueError):
            self._malformed(where, NOT_A_RECORD)
            return
        report.records += 1
        summary = rec.get("ace")
        before = logged_label(summary) if type(summary) is dict else None
        if before is None:
            report.no_summary += 1
            if len(report.no_summary_examples) < self.examples:
                report.no_summary_examples.append(self._example(req, started, where))
            return
        app = summary.get("application")
        if type(app) is not str:
            app = None
        consumer = None if app is not None else rec.get("consumer")
        if consumer is not None:
            req.consumer = consumer
        self.clock.now = started
        if self.baseline is not None:
            before = label(self.baseline.decide_as(req, app))
        decision = self.new.decide_as(req, app)
        after = label(decision)
        report.decided += 1
        if after == before:
            report.unchanged += 1
            return
        op = decision.operation_id or summary.get("operation") or NO_OPERATION
        key = (app or NO_APPLICATION, str(op))
        group = report.groups.get(key)
        if group is None:
            group = report.groups[key] = Group()
        change = (before, after)
        group.changes[change] += 1
        kept = group.examples.setdefault(change, [])
        if len(kept) < self.examples:
            kept.append(self._example(req, started, where))

    def _example(self, req: Request, started: float, where: tuple[str, int]) -> dict[str, Any]:
        return {"file": where[0], "line": where[1], "time": _iso(started),
                "method": _printable(req.method),
                "uri": _printable(_redact(req.target or req.path, self._key_names))}

    def _malformed(self, where: tuple[str, int], error: str) -> None:
        report = self.report
        report.malformed += 1
        if len(report.malformed_lines) < MALFORMED_KEPT:
            report.malformed_lines.append({"file": where[0], "line": where[1],
                                           "error": _printable(error)})


def _request(rec: dict[str, Any]) -> tuple[Request, float]:
    r = rec["request"]
    method, uri = r["method"], r["uri"]
    started = rec["started_at"]
    if type(method) is not str or type(uri) is not str or type(started) not in (int, float):
        raise ValueError("not a record")
    headers = r.get("headers")
    if type(headers) is not dict:
        headers = {}
    path, _, raw_query = uri.partition("?")
    host = headers.get("host")
    if type(host) is list:
        host = host[0] if host else None
    service = rec.get("service")
    return Request(method, path or "/", headers, parse_query(raw_query) if raw_query else {},
                   host if type(host) is str else None,
                   service if type(service) is dict else None, None, uri), started / 1000.0


def _redact(uri: str, names: set[str]) -> str:
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and unescape(name) in names else part)
    return f"{path}?{'&'.join(parts)}"


def _printable(text: str) -> str:
    # Log lines are attacker-controlled: escape anything a terminal would act on.
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


# --- reading logs ---------------------------------------------------------------------------


def open_log(path: str) -> IO[bytes]:
    """A log file, gunzipped when it is gzip (by its first bytes, whatever its name)."""
    raw = open(path, "rb")  # noqa: SIM115 - handed to the caller, who closes it
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.open(raw)  # type: ignore[return-value]
    return raw


def lines(paths: Iterable[str], tick: Callable[[int], None] | None = None
          ) -> Iterator[tuple[bytes, tuple[str, int]]]:
    """Every non-blank line of every log, with (file, line number); ``tick``: bytes read."""
    for path in paths:
        with open_log(path) as f:
            raw = f.fileobj if isinstance(f, gzip.GzipFile) else f  # type: ignore[attr-defined]
            seen = 0
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield line, (path, n)
                if tick is not None and n % PROGRESS_EVERY == 0:
                    pos = raw.tell()
                    tick(pos - seen)
                    seen = pos
            if tick is not None:
                tick(raw.tell() - seen)


def replay(replayer: Replayer, paths: list[str], progress: bool = False) -> Report:
    """Feed every line of ``paths``; a rich progress bar on stderr when ``progress``."""
    if not progress:
        for line, where in lines(paths):
            replayer.feed_line(line, where)
        return replayer.report
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(Path(p).stat().st_size for p in paths)
    with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), transient=True,
                  console=Output().errors) as bar:
        task = bar.add_task("replay", total=total)
        for line, where in lines(paths, lambda n: bar.advance(task, n)):
            replayer.feed_line(line, where)
    return replayer.report


# --- the command ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """The replay command."""
    out = Output(args.json)
    clock = Clock()
    try:
        new = build_enforcer(args.config, args.specs_dir, clock)
        baseline = (build_enforcer(args.baseline, args.specs_dir, clock)
                    if args.baseline else None)
    except (DeckFileError, ConfigError) as exc:
        return out.fail(str(exc), EXIT_ERROR)
    for path in args.logs:
        if not Path(path).is_file():
            return out.fail(f"{path}: no such log file", EXIT_ERROR)
    replayer = Replayer(new, clock, baseline, examples=args.examples)
    try:
        report = replay(replayer, args.logs, progress=sys.stderr.isatty() and not args.json)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return out.fail(f"cannot read the log: {exc}", EXIT_ERROR)
    if args.json:
        out.json(report.as_json())
    else:
        _render(out, report, args)
    return EXIT_REFUSED if report.refused() else EXIT_SAME


def _render(out: Output, report: Report, args: argparse.Namespace) -> None:
    from rich import box
    from rich.table import Table

    c = out.console
    against = f"{args.baseline} (re-decided)" if args.baseline else "the logged outcomes"
    c.print(f"replayed {report.records} records against {args.config}, compared with "
            f"{against}", markup=False)
    if report.groups:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("Application", "Operation", "Change", "Count", "Examples"):
            table.add_column(col, no_wrap=col != "Examples")
        for (app, op), g in sorted(report.groups.items()):
            for (a, b), n in sorted(g.changes.items()):
                examples = "\n".join(f"{e['method']} {e['uri']}  {e['time']} "
                                     f"({e['file']}:{e['line']})"
                                     for e in g.examples.get((a, b), []))
                style = "red" if admitted(a) and not admitted(b) else None
                table.add_row(app, op, f"{a} -> {b}", str(n), examples, style=style)
        c.print(table)
    totals = report.totals()
    summary = ", ".join(f"{a} -> {b}: {n}" for (a, b), n in sorted(totals.items())) or "none"
    c.print(f"totals: {report.decided} decided, {report.unchanged} unchanged, "
            f"{sum(totals.values())} changed ({summary})", markup=False)
    refused = report.refused()
    if refused:
        c.print(f"{refused} request(s) that went upstream would be refused", style="bold red",
                markup=False)
    if report.no_summary:
        c.print(f"{report.no_summary} record(s) not replayed: {NO_SUMMARY}", style="yellow",
                markup=False)
    if report.malformed:
        where = ", ".join(f"{m['file']}:{m['line']} ({m['error']})"
                          for m in report.malformed_lines)
        more = "" if report.malformed <= len(report.malformed_lines) else ", ..."
        c.print(f"{report.malformed} malformed line(s) skipped: {where}{more}", style="yellow",
                markup=False)
