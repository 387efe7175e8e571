"""Where an auditor's evidence comes from: Temporal while it has the case, else the archive."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from audit.replay import replay_case
from store import archive
from workflows.case_models import CaseSnapshot
from workflows.client import CaseCommandError, get_case


class CaseNotFoundError(LookupError):
    pass


async def load_history(client: Client, engine: Engine, case_id: str) -> WorkflowHistory:
    """The case's full event history (Temporal forgets closed cases after its retention)."""
    try:
        return await client.get_workflow_handle(case_id).fetch_history()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    with Session(engine) as session:
        row = archive.archived(session, case_id)
        if row is None:
            raise CaseNotFoundError(f"case {case_id} not found in Temporal nor in the archive")
        return WorkflowHistory.from_json(case_id, archive.history_json(row))


async def current_state(client: Client, engine: Engine, case_id: str) -> CaseSnapshot:
    """The case now: from its workflow, or rebuilt by replaying its archived history."""
    try:
        return await get_case(client, case_id)
    except CaseCommandError:
        return await replayed_state(client, engine, case_id)


async def replayed_state(client: Client, engine: Engine, case_id: str) -> CaseSnapshot:
    """The case's last state, rebuilt from its history alone (no worker needs to run)."""
    verdict = await replay_case(await load_history(client, engine, case_id))
    if not verdict.states:
        raise CaseNotFoundError(f"case {case_id}: its history holds no state")
    return verdict.states[-1]
