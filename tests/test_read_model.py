"""The read model on SQLite and PostgreSQL: newest revision wins, inboxes and boards in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from domain.case_models import CaseSnapshot, ClaimTask
from domain.escalation_models import EscalationInput, EscalationKind
from store.db import session_scope
from store.read_model import (
    EscalationFilter,
    TaskFilter,
    list_escalations,
    list_tasks,
    project_escalation,
    project_snapshot,
)
from store.tables import CaseRow, TaskRow
from tests.harness import LEAD, dispute_input, opened_dispute
from workflows import case_logic
from workflows.escalation_logic import open_escalation

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _case() -> CaseSnapshot:
    return opened_dispute(dispute_input("10.00", region="24x7"), NOW)


def test_a_stale_or_repeated_write_never_replaces_a_newer_state(engine: Engine) -> None:
    opened = _case()
    claimed = opened.model_copy(deep=True)
    case_logic.claim(claimed, ClaimTask(task_id=f"{opened.id}.t1", actor=LEAD), NOW)
    assert claimed.revision > opened.revision

    project_snapshot(engine, claimed)
    project_snapshot(engine, opened)  # arrives late (a retried activity, a slow API write)
    project_snapshot(engine, claimed)  # and twice
    with Session(engine) as session:
        case = session.get(CaseRow, opened.id)
        task = session.get(TaskRow, f"{opened.id}.t1")
    assert case is not None and case.revision == claimed.revision
    assert task is not None and task.status == "claimed" and task.assignee == LEAD.name


def _task(queue: str, priority: int, due: datetime | None, created: datetime) -> TaskRow:
    return TaskRow(
        id=f"T-{uuid.uuid4().hex[:8]}",
        case_id="C",
        case_type="dispute",
        step="s",
        queue=queue,
        status="open",
        priority=priority,
        allowed_outcomes=["ok"],
        created_at=created,
        sla_due=due,
        revision=1,
    )


def test_the_inbox_lists_by_priority_then_nearest_deadline(engine: Engine) -> None:
    queue = f"q-{uuid.uuid4().hex[:6]}"
    later = _task(queue, 50, NOW + timedelta(hours=4), NOW - timedelta(hours=3))
    sooner = _task(queue, 50, NOW + timedelta(hours=1), NOW)
    urgent = _task(queue, 70, None, NOW)
    no_sla = _task(queue, 50, None, NOW - timedelta(days=1))
    with session_scope(engine) as session:
        session.add_all([later, sooner, urgent, no_sla])
    with Session(engine) as session:
        inbox = list_tasks(session, TaskFilter(queues=[queue], status="open"))
    assert [t.id for t in inbox] == [urgent.id, sooner.id, later.id, no_sla.id]


def _escalation(case_id: str, due_in: timedelta) -> EscalationInput:
    inp = dispute_input("10.00", region="24x7")
    route = inp.escalation_routes["*"]
    level = route.levels[0].model_copy(update={"sla": f"{int(due_in.total_seconds())}s"})
    return EscalationInput(
        escalation_id=f"{case_id}.e1",
        case_id=case_id,
        case_type="dispute",
        task_id=None,
        step=None,
        kind=EscalationKind.MANUAL,
        reason="r",
        region="24x7",
        vendor=None,
        opened_by="x",
        route=route.model_copy(update={"levels": [level]}),
    )


def test_the_board_shows_unresolved_first_most_overdue_first(engine: Engine) -> None:
    case_id = f"C-{uuid.uuid4().hex[:6]}"
    soon = open_escalation(_escalation(case_id + "a", timedelta(hours=1)), NOW)
    late = open_escalation(_escalation(case_id + "b", timedelta(hours=5)), NOW)
    done = open_escalation(_escalation(case_id + "c", timedelta(minutes=1)), NOW)
    done.status = done.status.RESOLVED
    for esc in (late, done, soon):
        project_escalation(engine, esc)
    with Session(engine) as session:
        rows = list_escalations(session, EscalationFilter(limit=500))
    ours = [r.id for r in rows if r.case_id.startswith(case_id)]
    assert ours == [soon.id, late.id, done.id]
