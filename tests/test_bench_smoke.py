"""The benchmark still runs: `python -m bench` in its tiny size gives every scenario figures.

No timing is asserted: CI machines are too noisy for that; docs/PERFORMANCE.md has figures.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from bench.results import SCENARIOS

REPO = Path(__file__).resolve().parent.parent
BENCH_TIMEOUT_S = 600


def test_tiny_benchmark_reports_every_scenario_with_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--repeats", "1", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(out.read_text())
    assert set(report["scenarios"]) == set(SCENARIOS)
    for name, scenario in report["scenarios"].items():
        if any(note.startswith("skipped") for note in scenario["notes"]):
            continue
        medians = [m["median"] for m in scenario["metrics"].values()]
        numbers = [v for v in medians if isinstance(v, int | float) and math.isfinite(v)]
        assert numbers, f"scenario {name} has no figures: {scenario}"
    assert report["targets"], "the targets table is empty"
    assert "whole_case" in run.stdout and "target" in run.stdout
