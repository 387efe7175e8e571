"""The benchmark's output: one table of figures, the targets as ratios, and a JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import SCENARIOS, Results

MetricRef = tuple[str, str]


@dataclass(frozen=True)
class Target:
    """A figure of Casebook, against the baseline's (a ratio) or alone, and its goal."""

    label: str
    casebook: MetricRef
    baseline: MetricRef | None
    goal: str
    met: Callable[[float], bool] | None  # on the ratio, or the figure when there is no baseline


TARGETS = (
    Target(
        "whole case: cases/s vs baseline workflows/s",
        ("whole_case", "cases_per_s"),
        ("baseline", "workflows_per_s"),
        ">= 0.5x",
        lambda r: r >= 0.5,
    ),
    Target(
        "claim p99, 10 agents vs baseline Update p99",
        ("claim", "c10_claim_p99_ms"),
        ("baseline", "c10_claim_update_p99_ms"),
        "<= 2x",
        lambda r: r <= 2,
    ),
    Target(
        "claim p99, 50 agents vs baseline Update p99",
        ("claim", "c50_claim_p99_ms"),
        ("baseline", "c50_claim_update_p99_ms"),
        "<= 2x",
        lambda r: r <= 2,
    ),
    Target(
        "claims/s, 10 agents vs baseline",
        ("claim", "c10_claims_per_s"),
        ("baseline", "c10_claims_per_s"),
        "-",
        None,
    ),
    Target(
        "claims/s, 50 agents vs baseline",
        ("claim", "c50_claims_per_s"),
        ("baseline", "c50_claims_per_s"),
        "-",
        None,
    ),
    Target(
        "intake: cases/s vs baseline workflows/s",
        ("intake", "cases_per_s"),
        ("baseline", "workflows_per_s"),
        "-",
        None,
    ),
    Target(
        "history events per human task vs baseline",
        ("cost_per_case", "events_per_human_task"),
        ("cost_per_case", "baseline_events_per_human_task"),
        "<= 2x",
        lambda r: r <= 2,
    ),
    Target(
        "workflow tasks per human task vs baseline",
        ("cost_per_case", "workflow_tasks_per_human_task"),
        ("cost_per_case", "baseline_workflow_tasks_per_human_task"),
        "-",
        None,
    ),
    Target(
        "SLA breach rate vs baseline workflows/s",
        ("sla_timers", "breach_rate_per_s"),
        ("baseline", "workflows_per_s"),
        ">= 0.5x",
        lambda r: r >= 0.5,
    ),
    Target(
        "SLA lag p99 vs baseline timer->activity p99",
        ("sla_timers", "lag_p99_ms"),
        ("sla_timers", "baseline_lag_p99_ms"),
        "<= 2x",
        lambda r: r <= 2,
    ),
    Target(
        "SLA lag p99 at a quarter of the rate (ms)",
        ("sla_timers", "quiet_lag_p99_ms"),
        None,
        "<= 1000",
        lambda v: v <= 1000,
    ),
    Target(
        "SLA lag grows at (breaches/s) vs baseline",
        ("sla_timers", "lag_grows_at_per_s"),
        ("sla_timers", "baseline_lag_grows_at_per_s"),
        "-",
        None,
    ),
    Target(
        "open cases while SLAs breach",
        ("sla_timers", "open_cases"),
        None,
        ">= 5000",
        lambda v: v >= 5000,
    ),
    Target(
        "inbox first page p99, SQLite via GET /tasks (ms)",
        ("inbox", "sqlite_api_open_p99_ms"),
        None,
        "<= 50",
        lambda v: v <= 50,
    ),
    Target(
        "inbox first page p99, PostgreSQL list_tasks (ms)",
        ("inbox", "postgresql_list_tasks_p99_ms"),
        None,
        "<= 50",
        lambda v: v <= 50,
    ),
)


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def figures_table(results: Results) -> str:
    rows = []
    for scenario in SCENARIOS:
        for metric in results.of(scenario):
            spread = f"{fmt(metric.low)}-{fmt(metric.high)}" if len(metric.values) > 1 else ""
            rows.append([scenario, metric.name, fmt(metric.median), spread, metric.unit])
        rows += [[scenario, note, "", "", ""] for note in results.notes.get(scenario, [])]
    return _table(["scenario", "figure", "median", "min-max", "unit"], rows)


def evaluate(results: Results) -> list[dict[str, Any]]:
    """Each target with Casebook's figure, the baseline's, their ratio and whether it is met."""
    rows = []
    for target in TARGETS:
        mine = results.value(*target.casebook)
        theirs = results.value(*target.baseline) if target.baseline else math.nan
        ratio = mine / theirs if target.baseline and theirs else math.nan
        rows.append(
            {
                "target": target.label,
                "casebook": _num(mine),
                "baseline": _num(theirs),
                "ratio": _num(ratio),
                "goal": target.goal,
                "met": _met(target, mine, ratio),
            }
        )
    return rows


def _met(target: Target, mine: float, ratio: float) -> bool | None:
    if target.met is None:
        return None
    value = ratio if target.baseline else mine
    return None if math.isnan(value) else target.met(value)


def targets_table(rows: list[dict[str, Any]]) -> str:
    verdict = {True: "met", False: "MISSED", None: ""}
    body = [
        [
            r["target"],
            fmt(r["casebook"]),
            fmt(r["baseline"]),
            f"{fmt(r['ratio'])}x" if r["ratio"] is not None else "-",
            r["goal"],
            verdict[r["met"]],
        ]
        for r in rows
    ]
    return _table(["target", "casebook", "baseline", "ratio", "goal", ""], body)


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


def as_json(results: Results, meta: dict[str, Any]) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for scenario in SCENARIOS:
        scenarios[scenario] = {
            "metrics": {
                m.name: {
                    "unit": m.unit,
                    "median": _num(m.median),
                    "min": _num(m.low),
                    "max": _num(m.high),
                    "values": [_num(v) for v in m.values],
                }
                for m in results.of(scenario)
            },
            "notes": results.notes.get(scenario, []),
        }
    return {"meta": meta, "scenarios": scenarios, "targets": evaluate(results)}


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
