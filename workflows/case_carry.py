"""Pure: the case a run hands to its successor when it continues as new.

The new run's input is an event of its history, so the carried state must not grow with
the case's whole past: history entries and done tasks stay in the runs that recorded them
(auditors stitch the runs together, `audit/runs.py`). What the rules still read is kept:
live tasks, the latest completed task, tasks an escalation points at, the latest decision
and its approvals (`money_rules.is_approved`), and per step the count of entries that key
idempotent calls (`case_core.entries_of`).
"""

from __future__ import annotations

from collections import Counter

from domain.case_models import CaseSnapshot, HistoryEntry, Task, TaskStatus
from workflows.case_core import last_completed_task
from workflows.money_rules import APPROVAL_GRANTED


def carry_on(case: CaseSnapshot) -> CaseSnapshot:
    """`case` compacted for the next run (the original is left as it is)."""
    tasks = _kept_tasks(case)
    kept = _kept_entries(case.history)
    dropped = [h for h in case.history if not any(h is k for k in kept)]
    counts = Counter(case.earlier_counts)
    counts.update(f"{h.event}:{h.step}" for h in dropped if h.step)
    return case.model_copy(
        deep=True,
        update={  # the kept parts are copied too: the new state shares nothing
            "run": case.run + 1,
            "earlier_entries": case.earlier_entries + len(case.history) - case.carried_entries,
            "carried_entries": len(kept),
            "history": [h.model_copy(deep=True) for h in kept],
            "history_offset": 0,
            "tasks": [t.model_copy(deep=True) for t in tasks],
            "earlier_tasks": case.earlier_tasks + len(case.tasks) - len(tasks),
            "earlier_counts": dict(counts),
        },
    )


def compactable_bytes(case: CaseSnapshot) -> int:
    """How much of the case (as JSON) `carry_on` would leave to this run's history."""
    entries = case.history[case.carried_entries :]
    kept = {id(t) for t in _kept_tasks(case)}
    dropped = [t for t in case.tasks if id(t) not in kept]
    return sum(len(h.model_dump_json()) for h in entries) + sum(
        len(t.model_dump_json()) for t in dropped
    )


def _kept_tasks(case: CaseSnapshot) -> list[Task]:
    last = last_completed_task(case)
    pointed_at = {e.task_id for e in case.escalations if e.task_id}
    return [t for t in case.tasks if t.status != TaskStatus.DONE or t is last or t.id in pointed_at]


def _kept_entries(history: list[HistoryEntry]) -> list[HistoryEntry]:
    decision = next((h for h in reversed(history) if h.event == "task_completed"), None)
    if decision is None:
        return []
    return [
        h
        for h in history
        if h is decision or (h.event == APPROVAL_GRANTED and h.task_id == decision.task_id)
    ]
