"""The daily, weekly or monthly review of one vendor: the KPIs that matter, in one text.

Used by `casebook report daily|weekly|monthly` (and meant for the vendor leads' digest
email): each section is a report of reports/kpis.py over the same period and vendor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine

from reports import kpis
from reports.kpis import Report, ReportFilter

# The review's sections: (title, report, group_by).
SECTIONS: tuple[tuple[str, str, str | None], ...] = (
    ("SLA attainment", "sla", None),
    ("SLA attainment by step", "sla", "step"),
    ("Time to first touch", "first-touch", None),
    ("Handle time", "handle-time", None),
    ("Backlog and aging (business days)", "backlog", "queue"),
    ("Escalations", "escalations", None),
    ("Reassignments", "reassignments", None),
    ("Escalation, reopen and first-time-right rates", "quality", None),
    ("Throughput per agent", "throughput", None),
    ("Disputes by reason code", "disputes", None),
    ("Collections", "collections", None),
)


@dataclass
class Review:
    title: str
    f: ReportFilter
    sections: list[tuple[str, Report]]


def review(engine: Engine, title: str, f: ReportFilter) -> Review:
    sections = [
        (heading, kpis.run(engine, name, replace(f, group_by=group)))
        for heading, name, group in SECTIONS
    ]
    return Review(title, f, sections)


def as_text(r: Review) -> str:
    """Plain text tables, one per section (what a terminal and an email both show)."""
    lines = [r.title, f"{r.f.start.isoformat()} to {r.f.end.isoformat()} ({r.f.timezone})", ""]
    for heading, report in r.sections:
        lines += [heading, "-" * len(heading)]
        lines += table_lines(report) if report.rows else ["(nothing in this period)"]
        lines.append("")
    return "\n".join(lines)


def table_lines(report: Report) -> list[str]:
    cells = [[_cell(row.get(c)) for c in report.columns] for row in report.rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(report.columns)]
    header = "  ".join(c.ljust(w) for c, w in zip(report.columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return [header, *body]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)
