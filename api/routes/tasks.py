"""/tasks and /queues: the inbox, claiming, releasing and completing work."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.schemas import CompleteBody, EntityId, Limit, Offset, PauseBody, ShortText, TaskOut
from api.services import tasks as service
from api.services.idempotency import IdempotencyKey
from domain.case_models import (
    Actor,
    CompleteTask,
    PauseTask,
    ReleaseTask,
    ResumeTask,
)
from store.read_model import TaskFilter

router = APIRouter(tags=["tasks"])

InboxReader = Annotated[Actor, Depends(authorize(Action.INBOX))]
Claimer = Annotated[Actor, Depends(authorize(Action.CLAIM))]
# The assignee's commands; the case checks the holder (409 naming them) and the vendor.
Worker = Annotated[Actor, Depends(authorize(Action.WORK_TASK))]


@router.get("/tasks", response_model=list[TaskOut])
async def inbox(
    actor: InboxReader,
    svc: ServicesDep,
    queue: Annotated[ShortText | None, Query()] = None,
    status: Literal["open", "claimed", "done"] | None = None,
    assignee: Annotated[ShortText | None, Query(description="a user name, or `me`")] = None,
    case_id: Annotated[EntityId | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[TaskOut]:
    """The inbox, most urgent first."""
    f = TaskFilter(
        queues=[queue] if queue else None,
        status=status,
        assignee=actor.name if assignee == "me" else assignee,
        case_id=case_id,
        limit=limit,
        offset=offset,
    )
    rows = await run_in_threadpool(service.inbox, svc, actor, f)
    return [TaskOut.of(r) for r in rows]


@router.post("/tasks/{task_id}/claim", response_model=TaskOut)
async def claim(
    task_id: str, actor: Claimer, svc: ServicesDep, key: IdempotencyKey = None
) -> TaskOut:
    """Claim a task: 409 naming the holder if someone has it, 403 if not eligible."""
    return TaskOut.of(await service.claim(svc, actor, task_id, key))


@router.post("/tasks/{task_id}/release", response_model=TaskOut)
async def release(
    task_id: str, actor: Worker, svc: ServicesDep, key: IdempotencyKey = None
) -> TaskOut:
    """Give a claimed task back to its queue."""
    return TaskOut.of(await service.command(svc, ReleaseTask(task_id=task_id, actor=actor), key))


@router.post("/tasks/{task_id}/complete", response_model=TaskOut)
async def complete(
    task_id: str, body: CompleteBody, actor: Worker, svc: ServicesDep, key: IdempotencyKey = None
) -> TaskOut:
    """Complete with an outcome from `allowed_outcomes` (422 lists them) and data."""
    cmd = CompleteTask(
        task_id=task_id, actor=actor, outcome=body.outcome, data=body.data, note=body.note
    )
    return TaskOut.of(await service.command(svc, cmd, key))


@router.post("/tasks/{task_id}/pause", response_model=TaskOut)
async def pause(
    task_id: str, body: PauseBody, actor: Worker, svc: ServicesDep, key: IdempotencyKey = None
) -> TaskOut:
    """Stop the SLA clock (e.g. awaiting the customer); `until` resumes it by itself."""
    cmd = PauseTask(task_id=task_id, actor=actor, reason=body.reason, until=body.until)
    return TaskOut.of(await service.command(svc, cmd, key))


@router.post("/tasks/{task_id}/resume", response_model=TaskOut)
async def resume(
    task_id: str, actor: Worker, svc: ServicesDep, key: IdempotencyKey = None
) -> TaskOut:
    """Restart the SLA clock; the deadline moves by the time paused."""
    return TaskOut.of(await service.command(svc, ResumeTask(task_id=task_id, actor=actor), key))


@router.post(
    "/queues/{queue}/claim-next",
    response_model=TaskOut,
    responses={204: {"description": "no open task the caller may take"}},
)
async def claim_next(queue: str, actor: Claimer, svc: ServicesDep) -> TaskOut | Response:
    """Claim the most urgent open task of the queue the caller may take; 204 when none."""
    task = await service.claim_next(svc, actor, queue)
    return TaskOut.of(task) if task else Response(status_code=204)
