"""One case, all its runs: a case that continued as new has one Temporal history per run
(same workflow id); auditors read them together, oldest first, as one case."""

from __future__ import annotations

import json
from collections.abc import Sequence

from temporalio.client import Client, WorkflowHistory

_STARTED = "workflow_execution_started_event_attributes"


async def fetch_runs(client: Client, case_id: str) -> list[WorkflowHistory]:
    """Every run's history, oldest first: from the latest run back along the id of the run
    each one continued (visibility is eventually consistent; the chain in history is not)."""
    runs: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(case_id, run_id=run_id).fetch_history()
        runs.append(history)
        run_id = previous_run_id(history)
        if not run_id:
            return runs[::-1]


def previous_run_id(history: WorkflowHistory) -> str | None:
    """The run this one continued as new from; None for a case's first run."""
    first = next(iter(history.events), None)
    if first is None or not first.HasField(_STARTED):
        return None
    return getattr(first, _STARTED).continued_execution_run_id or None


def runs_json(runs: Sequence[WorkflowHistory]) -> str:
    """One document for all runs; a one-run case keeps the plain history JSON it always had."""
    if len(runs) == 1:
        return runs[0].to_json()
    return json.dumps({"runs": [json.loads(run.to_json()) for run in runs]})


def runs_from_json(case_id: str, text: str) -> list[WorkflowHistory]:
    document = json.loads(text)
    if isinstance(document, dict) and "runs" in document:
        return [WorkflowHistory.from_json(case_id, run) for run in document["runs"]]
    return [WorkflowHistory.from_json(case_id, document)]
