"""The lead's escalation board, its actions, and the team's queues."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from starlette.concurrency import run_in_threadpool

from access.policy import Action, refuse_role
from api.console.pages import PREFIX, ConsoleRoute, render, see_other
from api.console.session import CsrfChecked, SignedIn, allowed
from api.deps import ServicesDep, permitted
from api.errors import ApiError
from api.schemas import MAX_PAGE, ActionBody, ReassignBody
from api.services import cases as case_service
from api.services import escalations as escalation_service
from api.services import tasks as task_service
from domain.case_models import Actor
from domain.escalation_models import EscalationKind, LeadAction
from store.read_model import EscalationFilter, TaskFilter
from store.tables import EscalationRow, TaskRow
from workflows.client import CaseCommandError
from workflows.escalation_logic import POLICY_ACTION

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

BoardReader = Annotated[Actor, Depends(allowed(Action.BOARD_READ))]
TeamLead = Annotated[Actor, Depends(allowed(Action.BOARD_ACT))]
Note = Annotated[str, Form()]
# What a board form may ask; each goes through the policy action the JSON route declares.
BOARD_ACTIONS = tuple(POLICY_ACTION)


@dataclass(frozen=True)
class ApprovalFacts:
    """What a lead approves: the amount the case would credit, read from the case."""

    amount: str | None
    currency: str


def proposed_credit(data: dict[str, Any], fallback: str) -> str:
    """The latest `credit_amount` a person put on the case (a finding, a correction), or
    the disputed amount: what the SOP's billing step would send."""
    found = [
        v["credit_amount"] for v in data.values() if isinstance(v, dict) and v.get("credit_amount")
    ]
    return str(found[-1]) if found else fallback


async def _approvals(
    svc: ServicesDep, actor: Actor, rows: Sequence[EscalationRow]
) -> dict[str, ApprovalFacts]:
    facts: dict[str, ApprovalFacts] = {}
    for row in rows:
        if row.kind != EscalationKind.APPROVAL or row.status == "resolved":
            continue
        try:
            case = await case_service.read_case(svc, actor, row.case_id)
        except (ApiError, CaseCommandError):
            continue  # the board still shows the row; its case is not readable right now
        facts[row.id] = ApprovalFacts(proposed_credit(case.data, str(case.amount)), case.currency)
    return facts


@router.get("/board")
async def board(
    request: Request, actor: BoardReader, svc: ServicesDep, status: str = "unresolved"
) -> Response:
    rows = await run_in_threadpool(
        escalation_service.board, svc, actor, EscalationFilter(limit=MAX_PAGE)
    )
    shown = [r for r in rows if status == "all" or r.status != "resolved"]
    context = {
        "rows": shown,
        "approvals": await _approvals(svc, actor, shown),
        "status": status,
        "can_act": {a: _may(actor, a) for a in BOARD_ACTIONS},
    }
    if request.headers.get("HX-Request") == "true":
        return render(request, "_board_rows.html", **context)
    return render(request, "board.html", **context)


def _may(actor: Actor, action: str) -> bool:
    return refuse_role(actor, POLICY_ACTION[action]) is None


@router.post("/escalations/{escalation_id}/{action}", dependencies=[CsrfChecked])
async def act(
    request: Request,
    escalation_id: str,
    action: str,
    actor: SignedIn,
    svc: ServicesDep,
    note: Note = "",
    to_user: Annotated[str, Form()] = "",
    to_queue: Annotated[str, Form()] = "",
) -> Response:
    if action not in BOARD_ACTIONS:
        raise ApiError("not_found", f"no board action {action!r}: {', '.join(BOARD_ACTIONS)}")
    permitted(actor, POLICY_ACTION[action])  # as the JSON route for this action declares
    detail: dict[str, str | None] = {}
    if action == "reassign":
        body = ReassignBody(to_user=to_user or None, to_queue=to_queue or None, note=note or None)
        detail = {"to_user": body.to_user, "to_queue": body.to_queue}
    else:
        body = ActionBody(note=note or None)
    lead_action = LeadAction(action=action, actor=actor, note=body.note, detail=detail)
    # `act` checks the action's scope on the escalation (404 outside the lead's vendor).
    await escalation_service.act(svc, escalation_id, lead_action)
    return see_other(f"{PREFIX}/board")


@dataclass
class QueueLine:
    queue: str
    open: int = 0
    claimed: int = 0
    breached: int = 0
    warned: int = 0
    oldest: datetime | None = None


def queue_lines(tasks: Sequence[TaskRow]) -> list[QueueLine]:
    """Backlog per queue: open and claimed tasks, how many are past or near their SLA."""
    lines: dict[str, QueueLine] = defaultdict(lambda: QueueLine(queue=""))
    for task in tasks:
        line = lines[task.queue]
        line.queue = task.queue
        if task.status == "open":
            line.open += 1
        elif task.status == "claimed":
            line.claimed += 1
        line.breached += task.sla_state == "breached"
        line.warned += task.sla_state == "warning"
        if line.oldest is None or task.created_at < line.oldest:
            line.oldest = task.created_at
    return sorted(lines.values(), key=lambda line: (-line.breached, line.queue))


@router.get("/queues")
async def queues(request: Request, actor: TeamLead, svc: ServicesDep) -> Response:
    pending: list[TaskRow] = []
    for status in ("open", "claimed"):
        f = TaskFilter(status=status, limit=MAX_PAGE)
        pending += await run_in_threadpool(task_service.inbox, svc, actor, f)
    return render(request, "queues.html", lines=queue_lines(pending))
