"""Opening and reading cases: the read model for lists, the workflow for the truth."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from access.policy import Action, Scope, reach, reaches_vendor, refuse_case, scope_of
from api.deps import Services, refused
from api.errors import ApiError
from api.schemas import CaseCreate
from api.services.idempotency import claim_key, request_hash
from api.services.intake import Intake, check_intake, checked_first
from domain.addresses import InvalidAddressError, parse_address
from domain.case_models import (
    Actor,
    CaseInput,
    CaseSnapshot,
    CaseStatus,
    HypercareWindow,
    SopRef,
    WaitingOn,
)
from domain.values import CASE_ID_PREFIX
from escalations import matrix_registry
from escalations.calendars import UnknownCalendarError, facts_for, get_calendar
from escalations.matrix import EscalationMatrix, routes_for
from sop_templates.registry import NoPublishedVersionError, hypercare_window, latest_published
from sop_templates.schema import EmailStep, SopTemplate
from store.db import session_scope
from store.read_model import CaseFilter, get_case, list_cases, project_snapshot
from store.tables import CaseRow, IdempotencyKeyRow
from workflows import case_waiting
from workflows import client as cases
from workflows.client import CaseCommandError


@dataclass(frozen=True)
class OpenedCase:
    snapshot: CaseSnapshot
    replayed: bool  # True when an Idempotency-Key returned an existing case


async def open_case(
    svc: Services, actor: Actor, body: CaseCreate, idempotency_key: str | None
) -> OpenedCase:
    """Start a case on the latest published SOP; a repeated Idempotency-Key returns it again."""
    intake = await check_intake(svc, body)
    inp, replayed = await run_in_threadpool(_prepare, svc, actor, body, intake, idempotency_key)
    return OpenedCase(await _start(svc, inp), replayed)


async def open_case_as(svc: Services, actor: Actor, body: CaseCreate, case_id: str) -> CaseSnapshot:
    """Open a case under an id the caller derived; `WorkflowAlreadyStartedError` if a case of
    that id exists (running or ended), so the caller knows this call did not open it."""
    intake = await check_intake(svc, body)
    inp, _ = await run_in_threadpool(_prepare, svc, actor, body, intake, None, case_id)
    return await _start(svc, inp, join_running=False)


async def _start(svc: Services, inp: CaseInput, join_running: bool = True) -> CaseSnapshot:
    snapshot = await cases.start_case(
        svc.temporal, svc.settings.task_queue, inp, join_running=join_running
    )
    await run_in_threadpool(project_snapshot, svc.engine, snapshot)
    return snapshot


def _prepare(
    svc: Services,
    actor: Actor,
    request: CaseCreate,
    intake: Intake,
    key: str | None,
    case_id: str | None = None,
) -> tuple[CaseInput, bool]:
    """The workflow input: the pinned SOP, checks, vendor, and the id (given, or derived from
    the Idempotency-Key over the request as sent, or new)."""
    body = intake.body
    with session_scope(svc.engine) as session:
        template, sop, hypercare = _pinned_sop(session, body.type)
        _check_against_template(body, template)
        vendor = case_vendor(actor, body.vendor)
        matrix = _pinned_matrix(session)
        replayed = False
        if case_id is None:
            case_id, replayed = _case_id(session, actor, request, key)
    if not intake.verified:
        template = checked_first(template)  # billing was down: the case checks first
    inp = case_input(svc, actor, body, case_id, template, sop, vendor, matrix=matrix)
    return inp.model_copy(update={"hypercare": hypercare}), replayed


def case_input(
    svc: Services,
    actor: Actor,
    body: CaseCreate,
    case_id: str,
    template: SopTemplate,
    sop: SopRef,
    vendor: str | None,
    *,
    matrix: tuple[int, EscalationMatrix],
) -> CaseInput:
    region, currency = body.placed()
    matrix_version, escalation_matrix = matrix
    return CaseInput(
        case_id=case_id,
        case_type=body.type,
        customer_id=body.customer_id,
        invoice_ids=body.invoice_ids,
        amount=body.amount,
        currency=currency,
        region=region,
        reason_code=body.reason_code,
        vendor=vendor,
        data=body.data,
        opened_by=actor,
        sop=sop,
        template=template,
        escalation_routes=routes_for(template.queues(), region, vendor, escalation_matrix),
        escalation_matrix_version=matrix_version,
        public_url=svc.settings.resolved_public_url(),
        calendars=facts_for(template.calendars(region), datetime.now(UTC).date()),
    )


def _pinned_sop(
    session: Session, case_type: str
) -> tuple[SopTemplate, SopRef, HypercareWindow | None]:
    """The version a new case pins, and its hypercare window if the case opens inside it
    (pinned like the template: the workflow never reads the registry)."""
    try:
        row = latest_published(session, case_type)
    except NoPublishedVersionError as exc:
        raise ApiError("invalid", f"type: {exc}", {"field": "type"}) from None
    sop = SopRef(name=row.name, version=row.version, content_hash=row.content_hash)
    window = hypercare_window(row)
    if window is not None and not window.covers(datetime.now(UTC)):
        window = None
    return SopTemplate.model_validate(row.content), sop, window


def _pinned_matrix(session: Session) -> tuple[int, EscalationMatrix]:
    """The escalation matrix a new case pins: the highest published version."""
    try:
        return matrix_registry.current(session)
    except matrix_registry.MatrixConflictError as exc:
        raise ApiError("conflict", str(exc)) from None


def _check_against_template(body: CaseCreate, template: SopTemplate) -> None:
    try:
        get_calendar(body.placed()[0])  # SLAs run on the region's business calendar
    except UnknownCalendarError as exc:
        raise ApiError("invalid", f"region: {exc}", {"field": "region"}) from None
    _check_recipients(body, template)
    if template.reason_codes and body.reason_code not in template.reason_codes:
        raise ApiError(
            "invalid",
            f"reason_code: must be one of {', '.join(template.reason_codes)}"
            + (f" (got {body.reason_code!r})" if body.reason_code else " (missing)"),
            {"field": "reason_code", "allowed": template.reason_codes},
        )


# `data` fields the case's emails go to: `contact` always, and any an email step's `to`
# names as `case.data.<field>`.
CONTACT_FIELD = "contact"
DATA_RECIPIENT = re.compile(r"^\s*case\.data\.([A-Za-z_][A-Za-z0-9_]*)\s*$")


def _check_recipients(body: CaseCreate, template: SopTemplate) -> None:
    """An address the case will send to is one plain address, refused here rather than
    failing (or adding headers) when the email goes."""
    named = (DATA_RECIPIENT.match(s.to) for s in template.steps if isinstance(s, EmailStep))
    fields = {CONTACT_FIELD} | {m.group(1) for m in named if m}
    for field in sorted(fields & body.data.keys()):
        if body.data[field] is None:
            continue  # no contact: the email has nobody to go to, which is not an error
        try:
            parse_address(body.data[field])
        except InvalidAddressError as exc:
            raise ApiError("invalid", f"data.{field}: {exc}", {"field": f"data.{field}"}) from None


def case_vendor(actor: Actor, requested: str | None) -> str | None:
    """The vendor a new case belongs to: a vendor-bound user's own (it may name no other);
    others name one or none, within what the policy lets them open."""
    vendor = requested
    if actor.vendor and not actor.cross_vendor:
        if requested and requested != actor.vendor:
            raise ApiError(
                "forbidden",
                f"vendor: users of {actor.vendor} cannot open cases for {requested}",
                {"field": "vendor"},
            )
        vendor = actor.vendor
    if scope_of(actor.role, Action.OPEN_CASE) != Scope.ANY and not reaches_vendor(actor, vendor):
        whose = vendor or "no vendor"
        raise ApiError(
            "forbidden", f"vendor: {actor.name} may not open cases for {whose}", {"field": "vendor"}
        )
    return vendor


def _case_id(session: Session, actor: Actor, body: CaseCreate, key: str | None) -> tuple[str, bool]:
    new_id = f"{CASE_ID_PREFIX[body.type]}-{uuid.uuid4().hex[:16].upper()}"
    if not key:
        return new_id, False
    new = IdempotencyKeyRow(
        user_id=actor.user_id or 0,
        key=key,
        request_hash=request_hash(body.model_dump(mode="json")),
        case_id=new_id,
        created_at=datetime.now(UTC),
    )
    row, fresh = claim_key(session, key, lambda: _idempotency_row(session, actor, key), new)
    return row.case_id, not fresh


def _idempotency_row(session: Session, actor: Actor, key: str) -> IdempotencyKeyRow | None:
    return session.exec(
        select(IdempotencyKeyRow).where(
            IdempotencyKeyRow.user_id == (actor.user_id or 0), IdempotencyKeyRow.key == key
        )
    ).first()


async def read_case(svc: Services, actor: Actor, case_id: str) -> CaseSnapshot:
    """The live case from its workflow; the read model's copy if Temporal no longer has it."""
    try:
        snapshot = await cases.get_case(svc.temporal, case_id)
    except CaseCommandError:
        row = await run_in_threadpool(_stored_case, svc, case_id)
        if row is None:
            raise
        snapshot = CaseSnapshot.model_validate(row.snapshot)
    refused(refuse_case(actor, Action.READ_CASE, snapshot))
    return snapshot


async def waiting_on(svc: Services, snapshot: CaseSnapshot) -> WaitingOn:
    """What the case waits on now, counted by its workflow (where its calendars are pinned);
    counted here from the snapshot when the workflow cannot answer (Temporal no longer has
    the case, or a worker from before the query): then a running clock's time left may be
    unknown (null)."""
    now = datetime.now(UTC)
    if snapshot.status == CaseStatus.OPEN:
        try:
            return await cases.waiting_on(svc.temporal, snapshot.id, now)
        except CaseCommandError:
            pass
    return case_waiting.waiting_on(snapshot, now)


def _stored_case(svc: Services, case_id: str) -> CaseRow | None:
    with Session(svc.engine) as session:
        return get_case(session, case_id)


def search_cases(svc: Services, actor: Actor, f: CaseFilter) -> Sequence[CaseRow]:
    with Session(svc.engine) as session:
        return list_cases(session, replace(f, reach=reach(actor, Action.LIST_CASES)))
