"""Where an auditor's evidence comes from: Temporal while it has the case, else the archive.

A case that continued as new is one case in several runs: every function here answers for
all of them (`audit/runs.py`)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from audit.replay import replay_runs, stitched
from audit.runs import fetch_runs, runs_from_json
from domain.case_models import CaseSnapshot
from store import archive
from workflows.client import CaseCommandError, get_case


class CaseNotFoundError(LookupError):
    pass


async def load_runs(client: Client, engine: Engine, case_id: str) -> list[WorkflowHistory]:
    """The case's full event history, one per run, oldest first (Temporal forgets closed
    cases after its retention; the archive keeps every run)."""
    try:
        return await fetch_runs(client, case_id)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    with Session(engine) as session:
        row = archive.archived(session, case_id)
        if row is None:
            raise CaseNotFoundError(f"case {case_id} not found in Temporal nor in the archive")
        return runs_from_json(case_id, archive.history_json(row))


async def current_state(client: Client, engine: Engine, case_id: str) -> CaseSnapshot:
    """The case now, with its whole history: from its workflow (the entries of its earlier
    runs rebuilt from their histories), or by replaying its archived history."""
    try:
        case = await get_case(client, case_id)
    except CaseCommandError:
        return await replayed_state(client, engine, case_id)
    if case.run == 1:
        return case
    runs = await load_runs(client, engine, case_id)
    earlier = (await replay_runs(runs[:-1])).states if len(runs) > 1 else []
    return stitched([earlier[-1:], [case]])[-1]


async def replayed_state(client: Client, engine: Engine, case_id: str) -> CaseSnapshot:
    """The case's last state, rebuilt from its history alone (no worker needs to run)."""
    verdict = await replay_runs(await load_runs(client, engine, case_id))
    if not verdict.states:
        raise CaseNotFoundError(f"case {case_id}: its history holds no state")
    return verdict.states[-1]
