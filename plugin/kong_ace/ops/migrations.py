"""Who must migrate: the applications still registered to deprecated or sunset API versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kong_ace.core.catalog import Catalog
from kong_ace.core.lifecycle import UNDATED, Lifecycle

DEPRECATED, SUNSET_AHEAD, SUNSET_PASSED = "deprecated", "sunset ahead", "sunset passed"
FINDING = ("application '{app}' is registered ({status}) to {target}, which reaches {api} "
           "({state}{when})")


def registrations(cat: Catalog, now: float) -> list[dict[str, Any]]:
    """One entry per (application, registration, deprecated API) the registration reaches."""
    api_of = {op.uid: api for api in cat.apis.values() for op in api.operations}
    out = []
    for app in cat.applications.values():
        for reg in app.registrations:
            reached = dict.fromkeys(api_of[uid].name for uid in sorted(reg.op_uids))
            for name in reached:
                lc = cat.apis[name].lifecycle
                if lc is None:
                    continue
                out.append({"application": app.id, "registration": f"{reg.kind} {reg.target}",
                            "status": reg.status, "api": name,
                            "version": cat.apis[name].version, "state": state(lc, now),
                            "deprecated": _date(lc.deprecated_at),
                            "sunset": _date(lc.sunset_at),
                            "sunset_action": "refuse" if lc.refuse else "warn"})
    return out


def state(lc: Lifecycle, now: float) -> str:
    """Where the API version stands at ``now``."""
    if lc.sunset_at is not None:
        return SUNSET_PASSED if now >= lc.sunset_at else SUNSET_AHEAD
    return DEPRECATED


def findings(entries: list[dict[str, Any]]) -> list[str]:
    """One line per entry, for the warnings list."""
    return [FINDING.format(app=e["application"], status=e["status"], target=e["registration"],
                           api=f"API '{e['api']}'", state=e["state"],
                           when=f" {e['sunset']}" if e["sunset"] else "")
            for e in entries]


def _date(at: float | None) -> Any:
    if at is None:
        return None
    if at == UNDATED:
        return True
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat().replace("+00:00", "Z")
