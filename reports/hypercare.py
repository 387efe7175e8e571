"""Hypercare: how a newly published SOP version does against the version before it.

For each step of the new version: SLA attainment, handle time and loop backs of its tasks
since the version was published (until its hypercare window ends, if it had one), beside
the previous version's over as long a time just before the publication (the same steps,
the same length of time). What an SOP owner reads each day of a version's hypercare
window (`in_hypercare`: versions published with one, see `sop_templates/registry.py`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import sqlmodel
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from domain.case_models import HypercareWindow
from escalations.calendars import as_utc
from reports import kpis
from reports.kpis import Report, ReportFilter
from sop_templates.registry import hypercare_window
from store.tables import SopVersionRow

COLUMNS = [
    "step",
    "new_fell_due",
    "new_attainment",
    "previous_fell_due",
    "previous_attainment",
    "new_aht_median_s",
    "previous_aht_median_s",
    "new_loop_backs",
    "previous_loop_backs",
]


class HypercareError(ValueError):
    """An SOP version that is not published, or has no version before it."""


def published_at(engine: Engine, name: str, version: int) -> datetime:
    t = SopVersionRow.__table__
    query = select(t.c.published_at).where(t.c.name == name, t.c.version == version)
    with engine.connect() as connection:
        when = connection.execute(query).scalar()
    if when is None:
        raise HypercareError(f"sop: {name} v{version} is not a published version")
    return as_utc(when)


def window_of(engine: Engine, name: str, version: int) -> HypercareWindow | None:
    """The version's hypercare window, if it was published with one."""
    with Session(engine) as session:
        row = session.get(SopVersionRow, (name, version))
        return hypercare_window(row) if row is not None else None


def in_hypercare(engine: Engine, day: date) -> list[HypercareWindow]:
    """The windows open on `day` (UTC): their owners get that day's digest."""
    query = sqlmodel.select(SopVersionRow).where(col(SopVersionRow.hypercare_until).is_not(None))
    midnight = datetime.combine(day, time(), UTC)
    with Session(engine) as session:
        windows = [w for row in session.exec(query) if (w := hypercare_window(row))]
    return sorted(
        (w for w in windows if w.since.date() <= day and midnight < w.until),
        key=lambda w: (w.sop_name, w.sop_version),
    )


def compare(engine: Engine, name: str, version: int, now: datetime, **filters: object) -> Report:
    """The new version's steps, each beside the previous version's figures."""
    if version < 2:
        raise HypercareError(f"version: {name} v{version} has no version before it")
    since = published_at(engine, name, version)
    window = window_of(engine, name, version)
    if window is not None:
        now = min(now, window.until)  # after its window, the window is what is compared
    length = max(now - since, timedelta(days=1))
    new = ReportFilter(start=since, end=now, sop_name=name, sop_version=version, **filters)  # type: ignore[arg-type]
    old = replace(new, start=since - length, end=since, sop_version=version - 1)
    figures = {label: _by_step(engine, f) for label, f in (("new", new), ("previous", old))}
    rows = []
    for step, mine in figures["new"].items():
        theirs = figures["previous"].get(step, {})
        rows.append(
            {
                "step": step,
                **{f"new_{k}": v for k, v in mine.items()},
                **{f"previous_{k}": theirs.get(k) for k in mine},
            }
        )
    return Report("hypercare", COLUMNS, [{c: r.get(c) for c in COLUMNS} for r in rows])


def _by_step(engine: Engine, f: ReportFilter) -> dict[str, dict[str, object]]:
    """Per step: fell due and attainment, median handle time, loop backs (the KPIs' own
    SQL, grouped by step)."""
    by_step = replace(f, group_by="step")
    sla, handle, rework = (
        {str(r["step"]): r for r in kpis.run(engine, name, by_step).rows}
        for name in ("sla", "handle-time", "reassignments")
    )
    return {
        step: {
            "fell_due": sla.get(step, {}).get("fell_due", 0),
            "attainment": sla.get(step, {}).get("attainment"),
            "aht_median_s": handle.get(step, {}).get("aht_median_s"),
            "loop_backs": rework.get(step, {}).get("loop_backs", 0),
        }
        for step in sorted({*sla, *handle, *rework})
    }
