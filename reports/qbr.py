"""The quarterly business review pack of one vendor: one HTML file and its PDF.

Sections, in order (the same in both files): the scorecard against the vendor's targets
with a RAG status (targets.yaml), trends by month with charts, the top breach causes by
step, escalations and their outcomes, under-performing agents, and the SOP versions
published during the quarter. Charts are drawn by matplotlib; the PDF is matplotlib's
PdfPages too (a page per section, TrueType fonts so its text can be read back).
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
from sqlalchemy import Engine, select

from domain.values import is_id
from escalations.calendars import as_utc
from reports import charts, kpis
from reports.kpis import ReportFilter
from reports.periods import Period, parse_quarter, period
from reports.targets import TARGETS_FILE, targets_for
from store.facts import ESCALATION
from store.tables import SopVersionRow

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

SECTIONS = (
    ("scorecard", "Scorecard against targets"),
    ("trends", "Trends by month"),
    ("breaches", "Top breach causes by step"),
    ("escalations", "Escalations and their outcomes"),
    ("agents", "Under-performing agents"),
    ("sop-changes", "SOP changes of the quarter"),
)
# Scorecard measures: (key in targets.yaml, label, higher is better).
MEASURES = (
    ("sla_attainment", "SLA attainment", True),
    ("first_touch_median_hours", "Time to first touch, median (h)", False),
    ("aht_median_hours", "Average handle time, median (h)", False),
    ("first_time_right_rate", "First-time-right rate", True),
    ("escalation_rate", "Escalation rate", False),
    ("reopen_rate", "Reopen rate", False),
    ("reassignment_rate", "Reassignment rate", False),
)
RAG_COLOURS = {"green": "#2e7d32", "amber": "#f9a825", "red": "#c62828", "n/a": "#9e9e9e"}


class QbrError(ValueError):
    """A quarter or vendor the pack cannot be made from."""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Pack:
    vendor: str
    quarter: Period
    scorecard: Table
    trends: dict[str, list[tuple[str, float | None]]]  # chart title -> (month, value)
    breaches: Table
    escalations: Table
    agents: Table
    sop_changes: Table


def rag(value: float | None, target: float, higher_is_better: bool, band: float) -> str:
    """Green on the right side of the target, amber within the band short of it, red beyond."""
    if value is None:
        return "n/a"
    if higher_is_better:
        return "green" if value >= target else "amber" if value >= target * (1 - band) else "red"
    return "green" if value <= target else "amber" if value <= target * (1 + band) else "red"


def build(engine: Engine, vendor: str, quarter: str, targets_file: Path = TARGETS_FILE) -> Pack:
    """Everything the pack shows, from the facts of the vendor's quarter."""
    if not is_id(vendor):
        raise QbrError(f"vendor: {vendor!r} is not a vendor name (letters, digits, - _ .)")
    targets = targets_for(vendor, targets_file)
    q = period("quarter", parse_quarter(quarter), targets["timezone"])
    f = ReportFilter(start=q.start, end=q.end, timezone=q.timezone, vendor=vendor, as_of=q.end)
    return Pack(
        vendor=vendor,
        quarter=q,
        scorecard=_scorecard(engine, f, targets),
        trends=_trends(engine, f),
        breaches=_breaches(engine, f),
        escalations=_escalations(engine, f),
        agents=_agents(engine, f),
        sop_changes=_sop_changes(engine, q),
    )


def _one(engine: Engine, name: str, f: ReportFilter) -> dict[str, Any]:
    return kpis.run(engine, name, replace(f, group_by=None)).rows[0]


def _hours(seconds: float | None) -> float | None:
    return round(seconds / 3600, 2) if seconds is not None else None


def _scorecard(engine: Engine, f: ReportFilter, targets: dict[str, Any]) -> Table:
    quality = _one(engine, "quality", f)
    values = {
        "sla_attainment": _one(engine, "sla", f)["attainment"],
        "first_touch_median_hours": _hours(_one(engine, "first-touch", f)["first_touch_median_s"]),
        "aht_median_hours": _hours(_one(engine, "handle-time", f)["aht_median_s"]),
        "first_time_right_rate": quality["first_time_right_rate"],
        "escalation_rate": quality["escalation_rate"],
        "reopen_rate": quality["reopen_rate"],
        "reassignment_rate": _one(engine, "reassignments", f)["reassignment_rate"],
    }
    rows = []
    for key, label, higher in MEASURES:
        target = float(targets[key])
        status = rag(values[key], target, higher, targets["amber_band"])
        rows.append([label, values[key], target, "higher" if higher else "lower", status])
    return Table(["measure", "actual", "target", "better", "RAG"], rows)


def _trends(engine: Engine, f: ReportFilter) -> dict[str, list[tuple[str, float | None]]]:
    monthly = replace(f, group_by="month")

    def series(name: str, column: str, scale: float = 1) -> list[tuple[str, float | None]]:
        rows = kpis.run(engine, name, monthly).rows
        return [
            (r["month"], None if r[column] is None else round(r[column] / scale, 4)) for r in rows
        ]

    return {
        "SLA attainment": series("sla", "attainment"),
        "Tasks completed": series("handle-time", "completed"),
        "Average handle time (h)": series("handle-time", "aht_avg_s", 3600),
        "Escalations opened": series("escalations", "escalations"),
        "First-time-right rate": series("quality", "first_time_right_rate"),
    }


def _breaches(engine: Engine, f: ReportFilter) -> Table:
    rows = kpis.run(engine, "sla", replace(f, group_by="step")).rows
    ranked = sorted((r for r in rows if r["breached"]), key=lambda r: -r["breached"])
    return Table(
        ["step", "breached", "fell due", "attainment"],
        [[r["step"], r["breached"], r["fell_due"], r["attainment"]] for r in ranked[:10]],
    )


def _escalations(engine: Engine, f: ReportFilter) -> Table:
    facts = [
        x
        for x in kpis.load_facts(engine, ESCALATION, f)
        if f.start <= as_utc(x["opened_at"]) < f.end
    ]
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for x in facts:
        counts[(x["escalation_kind"] or "?", x["outcome"] or "open")] += 1
    summary = _one(engine, "escalations", f)
    rows = [[kind, outcome, n] for (kind, outcome), n in sorted(counts.items())]
    rows.append(["all", f"ack median {_hours(summary['ack_median_s'])} h", len(facts)])
    return Table(["kind", "outcome", "escalations"], rows)


def _agents(engine: Engine, f: ReportFilter) -> Table:
    rows = kpis.run(engine, "throughput", f).rows
    under = [r for r in rows if r["under_threshold"]]
    return Table(
        ["queue", "agent", "completed", "queue median"],
        [[r["queue"], r["agent"], r["completed"], r["queue_median"]] for r in under],
    )


def _sop_changes(engine: Engine, q: Period) -> Table:
    t = SopVersionRow.__table__
    query = select(
        t.c.name,
        t.c.version,
        t.c.status,
        t.c.published_at,
        t.c.published_by,
        t.c.hypercare_until,
        t.c.hypercare_warn_factor,
    )
    with engine.connect() as connection:
        rows = connection.execute(query.where(t.c.published_at.is_not(None))).all()
    inside = [r for r in rows if q.start <= as_utc(r.published_at) < q.end]
    return Table(
        ["SOP", "version", "status", "published", "by", "hypercare"],
        [
            [
                r.name,
                r.version,
                r.status,
                as_utc(r.published_at).date().isoformat(),
                r.published_by,
                _hypercare_text(r.hypercare_until, r.hypercare_warn_factor),
            ]
            for r in inside
        ],
    )


def _hypercare_text(until: datetime | None, warn_factor: float | None) -> str:
    """The version's hypercare window as a QBR reader wants it: until when, how much earlier."""
    if until is None:
        return "none"
    return f"until {as_utc(until).date().isoformat()}, warnings at x{warn_factor:g}"


# --- rendering ---------------------------------------------------------------------


def _html_table(table: Table, empty: str) -> str:
    if not table.rows:
        return f"<p>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(_html_cell(c, v) for c, v in zip(table.columns, row, strict=True))
        + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_cell(column: str, value: Any) -> str:
    text = html.escape("-" if value is None else str(value))
    if column == "RAG":
        return f'<td class="rag" style="background:{RAG_COLOURS[str(value)]}">{text}</td>'
    return f"<td>{text}</td>"


def render_html(pack: Pack) -> str:
    title = f"QBR {pack.quarter.label}: {pack.vendor}"
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{charts.png(charts.bar_chart(name, points))}"></figure>'
        for name, points in pack.trends.items()
    )
    bodies = {
        "scorecard": _html_table(pack.scorecard, "no measures"),
        "trends": figures,
        "breaches": _html_table(pack.breaches, "No SLA breach this quarter."),
        "escalations": _html_table(pack.escalations, "No escalation this quarter."),
        "agents": _html_table(pack.agents, "No agent under the threshold of their queue."),
        "sop-changes": _html_table(pack.sop_changes, "No SOP version published this quarter."),
    }
    sections = "".join(
        f'<section id="{sid}"><h2>{html.escape(heading)}</h2>{bodies[sid]}</section>'
        for sid, heading in SECTIONS
    )
    q = pack.quarter
    period_text = f"{q.start.isoformat()} to {q.end.isoformat()} ({q.timezone})"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(period_text)}</p>{sections}</body></html>"
    )


_CSS = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    "td.rag{color:#fff;font-weight:bold}figure{display:inline-block;margin:0 1em 1em 0}"
)


def render_pdf(pack: Pack, path: Path) -> None:
    """A page per section, in the HTML's order; the trends page holds every chart."""
    with plt.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        title = f"QBR {pack.quarter.label}: {pack.vendor}"
        pages = {
            "scorecard": pack.scorecard,
            "breaches": pack.breaches,
            "escalations": pack.escalations,
            "agents": pack.agents,
            "sop-changes": pack.sop_changes,
        }
        for sid, heading in SECTIONS:
            if sid == "trends":
                pdf.savefig(_trends_page(heading, pack.trends))
            else:
                pdf.savefig(_table_page(heading, pages[sid], title if sid == "scorecard" else None))
        info = pdf.infodict()
        info["Title"] = title


def _table_page(heading: str, table: Table, title: str | None) -> Figure:
    fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
    if title:
        fig.text(0.05, 0.96, title, fontsize=18, weight="bold")
    fig.text(0.05, 0.92, heading, fontsize=14)
    if not table.rows:
        fig.text(0.05, 0.88, "Nothing to show this quarter.", fontsize=10)
        return fig
    ax = fig.add_axes((0.05, 0.3, 0.9, 0.58))
    ax.axis("off")
    cells = [["-" if v is None else str(v) for v in row] for row in table.rows]
    # The first column names the row (a measure, a step, a queue): give it the room.
    rest = len(table.columns) - 1
    widths = [0.4, *([0.6 / rest] * rest)] if rest else [1.0]
    drawn = ax.table(
        cellText=cells, colLabels=table.columns, colWidths=widths, cellLoc="left", loc="upper left"
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    if "RAG" in table.columns:
        column = table.columns.index("RAG")
        for i, row in enumerate(table.rows, start=1):
            drawn[i, column].set_facecolor(RAG_COLOURS[str(row[column])])
    return fig


def _trends_page(heading: str, trends: dict[str, list[tuple[str, float | None]]]) -> Figure:
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.05, 0.96, heading, fontsize=14)
    count = len(trends)
    for i, (name, points) in enumerate(trends.items()):
        charts.bars(fig.add_subplot(count, 1, i + 1), name, points)
    fig.subplots_adjust(top=0.92, hspace=0.6)
    return fig


def write(pack: Pack, out_dir: Path) -> tuple[Path, Path]:
    """The pack's two files in `out_dir`: qbr-<vendor>-<quarter>.html and .pdf."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"qbr-{pack.vendor}-{pack.quarter.label}"
    html_path, pdf_path = out_dir / f"{stem}.html", out_dir / f"{stem}.pdf"
    html_path.write_text(render_html(pack), encoding="utf-8")
    render_pdf(pack, pdf_path)
    return html_path, pdf_path
