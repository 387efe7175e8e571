"""Sign-in, the agent's inbox, claim-next and the task page with its commands."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from starlette.concurrency import run_in_threadpool

from access.policy import Action
from api.console.pages import PREFIX, ConsoleRoute, home_for, render, see_other
from api.console.session import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    LOGIN_COOKIE,
    CsrfChecked,
    SignedIn,
    allowed,
    login_checked,
    new_login_nonce,
)
from api.deps import ServicesDep, user_of_token
from api.errors import ApiError
from api.schemas import MAX_PAGE, CompleteBody, EscalateBody, PauseBody
from api.services import cases as case_service
from api.services import escalations as escalation_service
from api.services import tasks as task_service
from domain.case_models import (
    Actor,
    CaseSnapshot,
    CompleteTask,
    EscalateCase,
    PauseTask,
    ReleaseTask,
    ResumeTask,
    Task,
)
from store.read_model import TaskFilter
from workflows.client import case_id_of

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

InboxReader = Annotated[Actor, Depends(allowed(Action.INBOX))]
Claimer = Annotated[Actor, Depends(allowed(Action.CLAIM))]
Worker = Annotated[Actor, Depends(allowed(Action.WORK_TASK))]
Raiser = Annotated[Actor, Depends(allowed(Action.ESCALATE))]
Reader = Annotated[Actor, Depends(allowed(Action.READ_CASE))]
Text = Annotated[str, Form()]


@router.get("")
async def landing(actor: SignedIn) -> Response:
    return see_other(home_for(actor))


def _login_form(
    request: Request, next: str, status_code: int = 200, error: str | None = None
) -> Response:
    nonce = new_login_nonce()
    response = render(
        request, "login.html", status_code=status_code, next=next, error=error, nonce=nonce
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login")
async def login_page(request: Request, next: str = "") -> Response:
    return _login_form(request, next)


@router.post("/login")
async def login(
    request: Request,
    svc: ServicesDep,
    token: Text,
    nonce: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    login_checked(request, nonce)
    try:
        user = await run_in_threadpool(user_of_token, svc, token.strip())
    except ApiError as exc:
        return _login_form(request, next, status_code=401, error=exc.message)
    # Only a console page: a crafted `next` must not send the user to another site.
    target = next if next.startswith(f"{PREFIX}/") else home_for(svc.actor(user))
    response = see_other(target)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    response.set_cookie(
        COOKIE,
        token.strip(),
        max_age=COOKIE_MAX_AGE_S,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(_: SignedIn) -> Response:
    response = see_other(f"{PREFIX}/login")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def _queues_of(actor: Actor, tasks: list[Any]) -> list[str]:
    """The queues to offer "next task" in: those the agent serves, or (a lead) those seen."""
    return sorted(set(actor.queues) | {t.queue for t in tasks if not actor.queues})


async def _inbox(svc: ServicesDep, actor: Actor) -> dict[str, Any]:
    mine = TaskFilter(status="claimed", assignee=actor.name, limit=MAX_PAGE)
    waiting = TaskFilter(status="open", limit=MAX_PAGE)
    my_tasks = await run_in_threadpool(task_service.inbox, svc, actor, mine)
    open_tasks = await run_in_threadpool(task_service.inbox, svc, actor, waiting)
    return {
        "my_tasks": my_tasks,
        "open_tasks": open_tasks,
        "queues": _queues_of(actor, list(open_tasks)),
    }


@router.get("/inbox")
async def inbox(request: Request, actor: InboxReader, svc: ServicesDep) -> Response:
    context = await _inbox(svc, actor)
    if request.headers.get("HX-Request") == "true":
        return render(request, "_inbox_tables.html", **context)
    return render(request, "inbox.html", **context)


@router.post("/queues/{queue}/next", dependencies=[CsrfChecked])
async def claim_next(request: Request, queue: str, actor: Claimer, svc: ServicesDep) -> Response:
    task = await task_service.claim_next(svc, actor, queue)
    if task is None:
        context = await _inbox(svc, actor)
        notice = f"No open task in {queue} that you may take."
        return render(request, "inbox.html", notice=notice, **context)
    return see_other(f"{PREFIX}/tasks/{task.id}")


def _task_of(case: CaseSnapshot, task_id: str) -> Task:
    task = case.task(task_id)
    if task is None:
        raise ApiError("not_found", f"task {task_id} not found")
    return task


def case_context(case: CaseSnapshot) -> dict[str, Any]:
    """The case, its plain data, and apart what steps stored as records: the findings and
    what billing answered (credit memos, exposure), each shown as a small table."""
    records = {k: v for k, v in case.data.items() if isinstance(v, dict)}
    plain = {k: v for k, v in case.data.items() if k not in records}
    return {"case": case, "facts": records, "plain_data": plain}


@router.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: str, actor: Reader, svc: ServicesDep) -> Response:
    case = await case_service.read_case(svc, actor, case_id_of(task_id))
    task = _task_of(case, task_id)
    return render(
        request,
        "task.html",
        task=task,
        mine=task.assignee == actor.name,
        **case_context(case),
    )


@router.get("/cases/{case_id}")
async def case_page(request: Request, case_id: str, actor: Reader, svc: ServicesDep) -> Response:
    case = await case_service.read_case(svc, actor, case_id)
    return render(request, "case.html", **case_context(case))


def _back(task_id: str) -> Response:
    return see_other(f"{PREFIX}/tasks/{task_id}")


@router.post("/tasks/{task_id}/claim", dependencies=[CsrfChecked])
async def claim(task_id: str, actor: Claimer, svc: ServicesDep) -> Response:
    await task_service.claim(svc, actor, task_id)
    return _back(task_id)


@router.post("/tasks/{task_id}/release", dependencies=[CsrfChecked])
async def release(task_id: str, actor: Worker, svc: ServicesDep) -> Response:
    await task_service.command(svc, ReleaseTask(task_id=task_id, actor=actor))
    return see_other(f"{PREFIX}/inbox")


def _data_fields(form: Any) -> dict[str, str]:
    """The step's fields the agent filled in (`field.<name>`); a blank one is not sent."""
    return {
        key.removeprefix("field."): value.strip()
        for key, value in form.multi_items()
        if key.startswith("field.") and isinstance(value, str) and value.strip()
    }


@router.post("/tasks/{task_id}/complete", dependencies=[CsrfChecked])
async def complete(request: Request, task_id: str, actor: Worker, svc: ServicesDep) -> Response:
    form = await request.form()
    note = form.get("note") or None
    # The API's own body: the same checks (outcome, data, note) as POST /tasks/{id}/complete.
    body = CompleteBody(outcome=form.get("outcome") or "", data=_data_fields(form), note=note)
    cmd = CompleteTask(
        task_id=task_id, actor=actor, outcome=body.outcome, data=body.data, note=body.note
    )
    done = await task_service.command(svc, cmd)
    return see_other(f"{PREFIX}/cases/{done.case_id}")


@router.post("/tasks/{task_id}/pause", dependencies=[CsrfChecked])
async def pause(task_id: str, actor: Worker, svc: ServicesDep, reason: Text) -> Response:
    body = PauseBody(reason=reason)
    await task_service.command(svc, PauseTask(task_id=task_id, actor=actor, reason=body.reason))
    return _back(task_id)


@router.post("/tasks/{task_id}/resume", dependencies=[CsrfChecked])
async def resume(task_id: str, actor: Worker, svc: ServicesDep) -> Response:
    await task_service.command(svc, ResumeTask(task_id=task_id, actor=actor))
    return _back(task_id)


@router.post("/cases/{case_id}/escalate", dependencies=[CsrfChecked])
async def escalate(
    request: Request,
    case_id: str,
    actor: Raiser,
    svc: ServicesDep,
    reason: Text,
    task_id: Annotated[str | None, Form()] = None,
) -> Response:
    body = EscalateBody(reason=reason, task_id=task_id or None)
    cmd = EscalateCase(actor=actor, reason=body.reason, task_id=body.task_id)
    link = await escalation_service.escalate(svc, actor, case_id, cmd)
    notice = f"Escalation {link.id} opened: a lead will pick it up."
    case = await case_service.read_case(svc, actor, case_id)
    return render(request, "case.html", notice=notice, **case_context(case))
