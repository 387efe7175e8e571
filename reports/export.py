"""A report as JSON-ready data or CSV text: the one shape the API and the CLI both give."""

from __future__ import annotations

import csv
import io
from typing import Any

from reports.kpis import Report, ReportFilter


def as_json(report: Report, f: ReportFilter) -> dict[str, Any]:
    return {
        "report": report.name,
        "period": {"start": f.start.isoformat(), "end": f.end.isoformat(), "tz": f.timezone},
        "filters": {
            k: v for k, v in {**f.filters(), "group_by": f.group_by}.items() if v is not None
        },
        "columns": report.columns,
        "rows": report.rows,
    }


def as_csv(report: Report) -> str:
    """One header line (the columns), one line per row; empty cells for missing values."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=report.columns, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
