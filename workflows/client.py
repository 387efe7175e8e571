"""How the API and the CLI talk to case workflows: start, command, read; errors as values."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from domain.case_models import (
    ApplyCalendars,
    CaseInput,
    CaseSnapshot,
    ClaimTask,
    CommandResult,
    CompleteTask,
    EscalateCase,
    MigrateSop,
    PauseTask,
    ReassignTask,
    ReleaseTask,
    ResumeTask,
    WaitingOn,
)
from domain.escalation_models import EscalationSnapshot, LeadAction
from workflows.case_workflow import CaseWorkflow

TaskCommand = ClaimTask | ReleaseTask | CompleteTask | PauseTask | ResumeTask | ReassignTask


class CaseCommandError(Exception):
    """A refused or failed command; `kind` is not_found, conflict, forbidden, invalid, timeout."""

    def __init__(self, kind: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details


async def connect(address: str, namespace: str, runtime: Runtime | None = None) -> Client:
    """A client using the one data converter every Casebook process shares."""
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter, runtime=runtime
    )


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime serving the SDK's own metrics (workflow task latency, slots,
    polls, activity failures) at `bind_address` for Prometheus: what an operator watches
    on a worker. One per process: it holds the port."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


async def start_case(
    client: Client, task_queue: str, inp: CaseInput, *, join_running: bool = True
) -> CaseSnapshot:
    """Start the case workflow. A second start with the same id joins the running first
    one; with `join_running=False` it raises `WorkflowAlreadyStartedError` instead, so the
    caller knows whether it was this call that started the case."""
    handle = await client.start_workflow(
        CaseWorkflow.run,
        inp,
        id=inp.case_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING
        if join_running
        else WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    return await read_case(handle)


# A query is answered by a worker in milliseconds; one that takes this long has none.
QUERY_TIMEOUT = timedelta(seconds=10)


async def read_case(
    handle: WorkflowHandle[Any, Any], timeout: timedelta = QUERY_TIMEOUT
) -> CaseSnapshot:
    """The case as the workflow holds it (a closed case answers with its final state)."""
    try:
        return await handle.query(CaseWorkflow.snapshot, rpc_timeout=timeout)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CaseCommandError("not_found", f"case {handle.id} not found") from exc
        if exc.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED):
            raise CaseCommandError(
                "unavailable", f"case {handle.id}: no worker answered; try again shortly"
            ) from exc
        raise_if_no_worker(exc, handle.id)
        raise


def raise_if_no_worker(exc: RPCError, case_id: str) -> None:
    """Temporal answers FAILED_PRECONDITION when no worker has polled the case's task queue
    lately: an outage of ours (503), not a server error."""
    if exc.status == RPCStatusCode.FAILED_PRECONDITION and "no poller" in exc.message:
        raise CaseCommandError(
            "unavailable", f"case {case_id}: no worker is running; try again shortly"
        ) from exc


async def get_case(
    client: Client, case_id: str, timeout: timedelta = QUERY_TIMEOUT
) -> CaseSnapshot:
    return await read_case(client.get_workflow_handle(case_id), timeout)


async def waiting_on(
    client: Client, case_id: str, at: datetime, timeout: timedelta = QUERY_TIMEOUT
) -> WaitingOn:
    """What the case waits on at `at`, counted by its workflow (its calendars are pinned
    there). Errors as `read_case`'s; an older worker without the query answers `invalid`."""
    handle = client.get_workflow_handle(case_id)
    try:
        return await handle.query(CaseWorkflow.waiting_on, at, rpc_timeout=timeout)
    except WorkflowQueryFailedError as exc:
        raise CaseCommandError("invalid", f"case {case_id}: {exc.message}") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CaseCommandError("not_found", f"case {case_id} not found") from exc
        raise CaseCommandError("unavailable", f"case {case_id}: {exc.message}") from exc


# Worth another try until the request's timeout: Temporal admits 10 Updates in flight per
# workflow (a burst waits its turn), and aborts admitted Updates when it clears the
# workflow's update registry (retryable, the server says).
RETRYABLE_UPDATE_STATUS = (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)


async def _update(
    client: Client,
    case_id: str,
    update: str,
    cmd: Any,
    timeout: timedelta,
    update_id: str | None,
    result_type: type[Any] = CommandResult,
) -> Any:
    handle = client.get_workflow_handle(case_id)
    deadline = time.monotonic() + timeout.total_seconds()
    # One id for every attempt: an attempt that did land is answered, not applied twice.
    update_id = update_id or str(uuid.uuid4())
    for attempt in itertools.count():
        try:
            return await _update_once(handle, update, cmd, timeout, update_id, result_type)
        except RPCError as exc:
            if exc.status not in RETRYABLE_UPDATE_STATUS:
                raise
            if time.monotonic() > deadline:
                raise CaseCommandError(
                    "timeout", f"case {case_id} did not answer in time ({exc.message})"
                ) from exc
            await asyncio.sleep(random.uniform(0.01, min(0.5, 0.02 * 2**attempt)))
    raise AssertionError("unreachable")


async def _update_once(
    handle: WorkflowHandle[Any, Any],
    update: str,
    cmd: Any,
    timeout: timedelta,
    update_id: str | None,
    result_type: type[Any],
) -> Any:
    case_id = handle.id
    try:
        return await handle.execute_update(
            update, cmd, id=update_id, result_type=result_type, rpc_timeout=timeout
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError):
            details = cause.details[0] if cause.details else None
            raise CaseCommandError(cause.type or "conflict", cause.message, details) from exc
        raise
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise CaseCommandError("timeout", f"case {case_id} did not answer in time") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            if await _is_closed(handle):
                raise CaseCommandError("conflict", f"{case_id} is closed") from exc
            raise CaseCommandError("not_found", f"{case_id} not found") from exc
        raise_if_no_worker(exc, case_id)
        raise


async def is_running(client: Client, case_id: str) -> bool:
    """Whether Temporal runs a workflow of this id now (False for an ended or unknown one)."""
    handle = client.get_workflow_handle(case_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return description.status == WorkflowExecutionStatus.RUNNING


async def _is_closed(handle: WorkflowHandle[Any, Any]) -> bool:
    """An Update to a finished workflow is refused as NOT_FOUND: tell it from a missing one."""
    try:
        description = await handle.describe()
    except RPCError:
        return False
    return description.status not in (None, WorkflowExecutionStatus.RUNNING)


# The case workflow's Updates on a task, by command type.
TASK_UPDATES: dict[type[Any], str] = {
    ClaimTask: "claim_task",
    ReleaseTask: "release_task",
    CompleteTask: "complete_task",
    PauseTask: "pause_task",
    ResumeTask: "resume_task",
    ReassignTask: "reassign_task",
}


def derived_update_id(user_id: int, command: str, target: str, key: str) -> str:
    """The Update id of a keyed request: bound to who sent which command to what, so one
    user's key can never join (and read the answer of) another's command."""
    material = json.dumps([user_id, command, target, key])
    return "key-" + hashlib.sha256(material.encode()).hexdigest()


async def command_task(
    client: Client, cmd: TaskCommand, timeout: timedelta, update_id: str | None = None
) -> CommandResult:
    """Send a task command to its case; the case's validators decide. The answer names the
    task and the case's revision; the case itself is read with `get_case`."""
    update = TASK_UPDATES[type(cmd)]
    return await _update(client, case_id_of(cmd.task_id), update, cmd, timeout, update_id)


async def escalate_case(
    client: Client,
    case_id: str,
    cmd: EscalateCase,
    timeout: timedelta,
    update_id: str | None = None,
) -> CommandResult:
    return await _update(client, case_id, "escalate", cmd, timeout, update_id)


async def migrate_case(
    client: Client, case_id: str, cmd: MigrateSop, timeout: timedelta
) -> CommandResult:
    return await _update(client, case_id, "migrate_sop", cmd, timeout, None)


async def act_on_escalation(
    client: Client, escalation_id: str, action: LeadAction, timeout: timedelta
) -> EscalationSnapshot:
    return await _update(client, escalation_id, "act", action, timeout, None, EscalationSnapshot)


async def get_escalation(client: Client, escalation_id: str) -> EscalationSnapshot:
    handle = client.get_workflow_handle(escalation_id)
    try:
        return await handle.query("snapshot", result_type=EscalationSnapshot)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CaseCommandError("not_found", f"escalation {escalation_id} not found") from exc
        raise


def case_id_of(task_id: str) -> str:
    """Task ids are `<case id>.t<n>`: the case is found without a lookup."""
    case_id, sep, number = task_id.rpartition(".t")
    if not sep or not case_id or not number.isdigit():
        raise CaseCommandError("not_found", f"task {task_id} not found")
    return case_id


async def apply_calendars(
    client: Client, case_id: str, cmd: ApplyCalendars, timeout: timedelta
) -> list[str]:
    """Move the case's clocks onto changed calendars; the names of those that moved."""
    return await _update(client, case_id, "apply_calendars", cmd, timeout, None, list[str])


async def open_case_ids(client: Client, task_queue: str) -> list[str]:
    """The cases of this deployment that are still running."""
    query = (
        f"WorkflowType = 'CaseWorkflow' AND TaskQueue = '{task_queue}' "
        "AND ExecutionStatus = 'Running'"
    )
    return [wf.id async for wf in client.list_workflows(query)]


async def all_case_ids(client: Client, task_queue: str) -> list[str]:
    """Every case workflow of this deployment (its task queue) Temporal knows, open or closed;
    a case that continued as new is listed once for all its runs."""
    query = f"WorkflowType = 'CaseWorkflow' AND TaskQueue = '{task_queue}'"
    return list(dict.fromkeys([wf.id async for wf in client.list_workflows(query)]))
