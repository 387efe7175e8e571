"""What auditors read: timelines, replay verdicts, and the case as it stood at a moment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowHistory

from access.policy import Action, Scope, refuse_case, scope_of
from api.deps import Services, refused
from api.errors import ApiError
from audit.replay import ReplayVerdict, event_time, replay_runs, state_as_of
from audit.sources import CaseNotFoundError, current_state, load_runs
from audit.timeline import TimelineEntry, timeline
from domain.case_models import Actor, CaseSnapshot
from store.tables import OutboxRow


def emails_about(svc: Services, case_id: str) -> Sequence[OutboxRow]:
    with Session(svc.engine) as session:
        query = select(OutboxRow).where(OutboxRow.case_id == case_id)
        return session.exec(query.order_by(col(OutboxRow.id))).all()


async def case_timeline(
    svc: Services, actor: Actor, case_id: str
) -> tuple[CaseSnapshot, list[TimelineEntry]]:
    case = await _case(svc, case_id)
    refused(refuse_case(actor, Action.AUDIT_READ, case))
    return case, timeline(case, await run_in_threadpool(emails_about, svc, case_id))


async def _case(svc: Services, case_id: str) -> CaseSnapshot:
    try:
        return await current_state(svc.temporal, svc.engine, case_id)
    except CaseNotFoundError as exc:
        raise ApiError("not_found", str(exc)) from None


async def _in_scope(svc: Services, actor: Actor, action: Action, case_id: str) -> None:
    """A reader limited to a vendor (a lead) reads only that vendor's cases' histories."""
    if scope_of(actor.role, action) != Scope.ANY:
        refused(refuse_case(actor, action, await _case(svc, case_id)))


async def history_of(
    svc: Services, actor: Actor, action: Action, case_id: str
) -> list[WorkflowHistory]:
    """Every run's history of the case, oldest first."""
    await _in_scope(svc, actor, action, case_id)
    try:
        return await load_runs(svc.temporal, svc.engine, case_id)
    except CaseNotFoundError as exc:
        raise ApiError("not_found", str(exc)) from None


async def replay(svc: Services, actor: Actor, case_id: str) -> ReplayVerdict:
    return await replay_runs(await history_of(svc, actor, Action.AUDIT_REPLAY, case_id))


async def state_at(svc: Services, actor: Actor, case_id: str, as_of: str) -> CaseSnapshot:
    """`as_of` is an ISO-8601 instant or a history event id (`N` in the first run, `R:N`
    for event N of run R of a case that continued as new)."""
    runs = await history_of(svc, actor, Action.AUDIT_READ, case_id)
    instant = _instant(runs, as_of)
    verdict = await replay_runs(runs)
    state = state_as_of(verdict.states, instant)
    if state is None:
        raise ApiError("not_found", f"case {case_id} did not exist yet at {instant.isoformat()}")
    return state


def _instant(runs: Sequence[WorkflowHistory], as_of: str) -> datetime:
    run, _, event = as_of.rpartition(":")
    if event.isdigit() and (not run or run.isdigit()):
        number = int(run or 1)
        if not 1 <= number <= len(runs):
            raise ApiError("invalid", f"as_of: the case has {len(runs)} run(s), not {number}",
                           {"field": "as_of"})  # fmt: skip
        try:
            return event_time(runs[number - 1], int(event))
        except LookupError as exc:
            raise ApiError("invalid", f"as_of: {exc}", {"field": "as_of"}) from None
    try:
        instant = datetime.fromisoformat(as_of)
    except ValueError:
        raise ApiError("invalid", "as_of: give an ISO-8601 instant or an event id",
                       {"field": "as_of"}) from None  # fmt: skip
    if instant.tzinfo is None:
        raise ApiError("invalid", "as_of: the instant needs a time zone (e.g. Z)",
                       {"field": "as_of"})  # fmt: skip
    return instant
