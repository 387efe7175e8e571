"""Working tasks: every change goes through the case workflow's Updates, then the read model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from access.policy import Action, Reach, reach
from api.deps import Services
from api.errors import ApiError
from api.services.idempotency import run_once
from domain.case_models import Actor, ClaimTask, CommandResult, Task
from store.read_model import TaskFilter, list_tasks, open_tasks_in_queue, project_snapshot
from store.tables import TaskRow
from workflows import client as cases
from workflows.client import CaseCommandError, TaskCommand

# Candidates fetched per round of claim-next; a lost race just moves to the next one.
CLAIM_NEXT_BATCH = 10
CLAIM_NEXT_ROUNDS = 3


def inbox(svc: Services, actor: Actor, f: TaskFilter) -> Sequence[TaskRow]:
    with Session(svc.engine) as session:
        return list_tasks(session, _scoped(actor, f))


def _scoped(actor: Actor, f: TaskFilter) -> TaskFilter:
    """What the policy lets the actor see: agents their queues and vendor, leads theirs."""
    return replace(f, reach=reach(actor, Action.INBOX))


async def catch_up(svc: Services, result: CommandResult) -> None:
    """Write the case as it stands now (at least as new as the Update's answer), so the
    caller reads its own change; the Update's answer is kept small and carries no case."""
    snapshot = await cases.get_case(svc.temporal, result.case_id)
    await run_in_threadpool(project_snapshot, svc.engine, snapshot)


async def after(svc: Services, result: CommandResult) -> Task:
    await catch_up(svc, result)
    assert result.task is not None  # every task command answers with its task
    return result.task


def timeout(svc: Services) -> timedelta:
    return timedelta(seconds=svc.settings.update_timeout_seconds)


async def command(svc: Services, cmd: TaskCommand, key: str | None = None) -> Task:
    """Any task command (claim, release, complete, pause, resume, reassign) through the case;
    with an Idempotency-Key, at most once per user and key (`api/services/idempotency.py`)."""

    async def send(update_id: str | None) -> Task:
        result = await cases.command_task(svc.temporal, cmd, timeout(svc), update_id)
        return await after(svc, result)

    request = cmd.model_dump(mode="json", exclude={"actor"})
    name = cases.TASK_UPDATES[type(cmd)]
    return await run_once(svc.engine, cmd.actor, key, name, cmd.task_id, request, send, Task)


async def claim(svc: Services, actor: Actor, task_id: str, key: str | None = None) -> Task:
    return await command(svc, ClaimTask(task_id=task_id, actor=actor), key)


async def claim_next(svc: Services, actor: Actor, queue: str) -> Task | None:
    """Claim the most urgent open task in `queue` the actor may take; None when there is none.

    Tasks that another claim-next of this process is claiming right now come last, and are
    tried only if that claim lost: many agents at once then spread over the queue instead of
    all sending Updates to the same few cases (each a round trip to lose, and Temporal admits
    only 10 in flight per case). Across API processes the case's validator still decides.
    """
    claimable = reach(actor, Action.CLAIM)
    if claimable.queues is not None and queue not in claimable.queues:
        raise ApiError("forbidden", f"{actor.name} does not serve queue {queue}")
    tried: set[str] = set()
    for _ in range(CLAIM_NEXT_ROUNDS):
        skip = len(tried) + len(svc.claiming)
        rows = await run_in_threadpool(_candidates, svc, claimable, queue, skip)
        candidates = [row.id for row in rows if row.id not in tried]
        if not candidates:
            return None
        candidates.sort(key=lambda task_id: task_id in svc.claiming)  # stable: urgency kept
        for task_id in candidates:
            tried.add(task_id)
            task = await _claim_unless_taken(svc, actor, task_id)
            if task is not None:
                return task
    return None


async def _claim_unless_taken(svc: Services, actor: Actor, task_id: str) -> Task | None:
    """Claim `task_id` for claim-next; None if it went to someone else."""
    while (pending := svc.claiming.get(task_id)) is not None:
        if await asyncio.shield(pending):
            return None  # the other claim-next won it
    won = asyncio.get_running_loop().create_future()
    svc.claiming[task_id] = won
    task: Task | None = None
    try:
        task = await claim(svc, actor, task_id)
    except CaseCommandError as exc:
        if exc.kind not in ("conflict", "forbidden", "not_found"):
            raise  # a timeout or outage is the caller's to see, not a lost race
    finally:
        del svc.claiming[task_id]
        won.set_result(task is not None)
    return task


def _candidates(svc: Services, claimable: Reach, queue: str, skip: int) -> Sequence[TaskRow]:
    with Session(svc.engine) as session:
        return open_tasks_in_queue(session, queue, claimable, limit=CLAIM_NEXT_BATCH + skip)
