"""What auditors read: timelines, replay verdicts, and the case as it stood at a moment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowHistory

from api.deps import Services
from api.errors import ApiError
from audit.replay import ReplayVerdict, event_time, replay_case, state_as_of
from audit.sources import CaseNotFoundError, current_state, load_history
from audit.timeline import TimelineEntry, timeline
from store.tables import OutboxRow
from workflows.case_models import CaseSnapshot


def emails_about(svc: Services, case_id: str) -> Sequence[OutboxRow]:
    with Session(svc.engine) as session:
        query = select(OutboxRow).where(OutboxRow.case_id == case_id)
        return session.exec(query.order_by(col(OutboxRow.id))).all()


async def case_timeline(svc: Services, case_id: str) -> tuple[CaseSnapshot, list[TimelineEntry]]:
    try:
        case = await current_state(svc.temporal, svc.engine, case_id)
    except CaseNotFoundError as exc:
        raise ApiError("not_found", str(exc)) from None
    return case, timeline(case, await run_in_threadpool(emails_about, svc, case_id))


async def history_of(svc: Services, case_id: str) -> WorkflowHistory:
    try:
        return await load_history(svc.temporal, svc.engine, case_id)
    except CaseNotFoundError as exc:
        raise ApiError("not_found", str(exc)) from None


async def replay(svc: Services, case_id: str) -> ReplayVerdict:
    return await replay_case(await history_of(svc, case_id))


async def state_at(svc: Services, case_id: str, as_of: str) -> CaseSnapshot:
    """`as_of` is an ISO-8601 instant or a history event id."""
    history = await history_of(svc, case_id)
    instant = _instant(history, as_of)
    verdict = await replay_case(history)
    state = state_as_of(verdict.states, instant)
    if state is None:
        raise ApiError("not_found", f"case {case_id} did not exist yet at {instant.isoformat()}")
    return state


def _instant(history: WorkflowHistory, as_of: str) -> datetime:
    if as_of.isdigit():
        try:
            return event_time(history, int(as_of))
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
