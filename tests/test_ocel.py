"""The OCEL 2.0 export reads back with pm4py, with every case event and object in it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pm4py

from audit.ocel import ocel_log
from domain.case_models import CaseSnapshot, ClaimTask, CompleteTask
from tests.harness import AGENT, dispute_input, opened_dispute
from workflows import case_logic

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _worked_case(n: int) -> CaseSnapshot:
    inp = dispute_input("100.00", region="US", case_id=f"DSP-OCEL-{n}")
    case = opened_dispute(inp, START + timedelta(hours=n))
    task = f"{case.id}.t1"
    case_logic.claim(
        case, ClaimTask(task_id=task, actor=AGENT), START + timedelta(hours=n, minutes=5)
    )
    case_logic.complete(
        case,
        inp.template,
        CompleteTask(task_id=task, actor=AGENT, outcome="accept"),
        START + timedelta(hours=n, minutes=30),
    )
    return case


def test_pm4py_reads_the_log_back(tmp_path: Path) -> None:
    cases = [_worked_case(n) for n in range(3)]
    path = tmp_path / "ocel.json"
    path.write_text(json.dumps(ocel_log(cases)))
    ocel = pm4py.read_ocel2_json(str(path))
    assert len(ocel.events) == sum(len(c.history) for c in cases)
    types = set(ocel.objects["ocel:type"])
    assert types == {"case", "task", "customer", "invoice"}
    claimed = ocel.events[ocel.events["ocel:activity"] == "task_claimed"]
    assert len(claimed) == 3
    related = ocel.relations[ocel.relations["ocel:activity"] == "task_claimed"]
    assert set(related["ocel:type"]) == {"case", "task"}
