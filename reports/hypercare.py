"""Hypercare: how a newly published SOP version does against the version before it.

For each step of the new version: SLA attainment, handle time and loop backs of its tasks
since the version was published, beside the previous version's over as long a time just
before the publication (the same steps, the same length of time). What an SOP owner
reads each day of a new version's hypercare window.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, select

from escalations.calendars import as_utc
from reports import kpis
from reports.kpis import Report, ReportFilter
from store.tables import SopVersionRow

# Days after its publication a new SOP version is watched (its owners' daily digest).
HYPERCARE_DAYS = 14
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


def in_hypercare(engine: Engine, day: date, days: int) -> list[tuple[str, int]]:
    """The SOP versions (after a first one) published in the `days` before `day` or on it."""
    t = SopVersionRow.__table__
    query = select(t.c.name, t.c.version, t.c.published_at).where(
        t.c.published_at.is_not(None), t.c.version > 1
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return sorted(
        (r.name, r.version)
        for r in rows
        if timedelta(0) <= day - as_utc(r.published_at).date() < timedelta(days=days)
    )


def compare(engine: Engine, name: str, version: int, now: datetime, **filters: object) -> Report:
    """The new version's steps, each beside the previous version's figures."""
    if version < 2:
        raise HypercareError(f"version: {name} v{version} has no version before it")
    since = published_at(engine, name, version)
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
