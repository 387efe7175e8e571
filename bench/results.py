"""What the scenarios measured: one value per metric per repeat, plus notes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.stats import median

# Every scenario the benchmark reports, in the order it runs them.
SCENARIOS = (
    "baseline",
    "intake",
    "claim",
    "whole_case",
    "cost_per_case",
    "sla_timers",
    "inbox",
    "audit_replay",
)


UNITS = (
    ("_per_open_case", "KiB"),
    ("_per_s", "/s"),
    ("_ms", "ms"),
    ("_mib", "MiB"),
    ("_s", "s"),
)


def unit_of(name: str) -> str:
    """The unit a metric's name ends with (`lag_p99_ms` is in ms); counts have none."""
    return next((unit for suffix, unit in UNITS if name.endswith(suffix)), "")


@dataclass
class Metric:
    scenario: str
    name: str
    values: list[float] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return unit_of(self.name)

    @property
    def median(self) -> float:
        return median(self.values)

    @property
    def low(self) -> float:
        finite = [v for v in self.values if not math.isnan(v)]
        return min(finite) if finite else math.nan

    @property
    def high(self) -> float:
        finite = [v for v in self.values if not math.isnan(v)]
        return max(finite) if finite else math.nan


@dataclass
class Results:
    metrics: dict[tuple[str, str], Metric] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, scenario: str, values: dict[str, float]) -> None:
        """One repeat's values of `scenario`."""
        for name, value in values.items():
            metric = self.metrics.setdefault((scenario, name), Metric(scenario, name))
            metric.values.append(float(value))

    def note(self, scenario: str, text: str) -> None:
        if text not in self.notes.setdefault(scenario, []):
            self.notes[scenario].append(text)

    def get(self, scenario: str, name: str) -> Metric | None:
        return self.metrics.get((scenario, name))

    def value(self, scenario: str, name: str) -> float:
        metric = self.get(scenario, name)
        return metric.median if metric else math.nan

    def of(self, scenario: str) -> list[Metric]:
        return [m for (s, _), m in self.metrics.items() if s == scenario]
