"""An escalation: a case of type `escalation`, owned by tier-2, with its own SLA ladder."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailRequest
    from activities.read_model import PROJECT_ESCALATION
    from domain.case_models import EscalationEvent, EscalationNote, HypercareWindow
    from domain.escalation_models import (
        EscalationInput,
        EscalationSnapshot,
        EscalationStatus,
        LeadAction,
        TaskDecision,
    )
    from workflows import escalation_logic
    from workflows.case_logic import CaseRuleError
    from workflows.case_sla import NOTE_DECLINED
    from workflows.case_workflow import HYPERCARE_PATCH, PROJECTION_RETRY, rule_error

# Email never blocks the escalation: it is sent alongside, retried for about a day.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=150,
)


@workflow.defn(name="EscalationWorkflow")
class EscalationWorkflow:
    @workflow.init
    def __init__(self, inp: EscalationInput) -> None:
        self._input = inp
        self._esc = escalation_logic.open_escalation(inp, workflow.now())
        self._projected_revision = 0
        self._emails: list[Any] = []
        self._case_events: list[EscalationEvent] = [
            EscalationEvent(
                escalation_id=inp.escalation_id,
                event="opened",
                actor=inp.opened_by,
                note=inp.reason,
                status="open",
            )
        ]

    @workflow.run
    async def run(self, inp: EscalationInput) -> EscalationSnapshot:
        self._notify_level()
        # Patched, asked only for a breach under hypercare (escalations before had none).
        if inp.hypercare is not None and workflow.patched(HYPERCARE_PATCH):
            self._notify_sop_owner(inp.hypercare)
        while True:
            await self._tell_case()
            if self._esc.revision > self._projected_revision:
                await self._project()
            if self._esc.status == EscalationStatus.RESOLVED and not self._behind():
                break
            await self._sleep_until_change_or_deadline()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self._emails, return_exceptions=True)
        await self._tell_case()  # a raise that came after the resolution goes back
        return self._esc

    def _behind(self) -> bool:
        return self._esc.revision > self._projected_revision or bool(self._case_events)

    async def _sleep_until_change_or_deadline(self) -> None:
        seen = self._esc.revision
        deadline = escalation_logic.level_deadline(self._esc)
        timeout = (deadline - workflow.now()).total_seconds() if deadline else None
        if timeout is None or timeout > 0:
            try:
                await workflow.wait_condition(lambda: self._esc.revision != seen, timeout=timeout)
                return
            except TimeoutError:
                pass
        if escalation_logic.breach_level(self._esc, self._input, workflow.now()):
            self._notify_level()
            self._case_events.append(
                EscalationEvent(
                    escalation_id=self._esc.id,
                    event="raised",
                    status="open",
                    note=f"raised to {self._esc.level_name} ({self._esc.queue})",
                )
            )

    def _notify_sop_owner(self, window: HypercareWindow) -> None:
        """The breach notice to the SOP owner of a version in hypercare, once per breach."""
        esc = self._esc
        context = escalation_logic.notice_context(esc, self._input, workflow.now())
        request = EmailRequest(
            idempotency_key=f"hypercare-breach:{esc.id}",
            case_id=esc.case_id,
            template="hypercare_breach",
            to=[window.owner_email],
            context={**context, **window.history_detail()},
        )
        self._send(request)

    def _notify_level(self) -> None:
        """Email the current level's queue; the outbox key makes a retry send nothing twice."""
        esc = self._esc
        request = EmailRequest(
            idempotency_key=f"escalation-opened:{esc.id}:level-{esc.level}",
            case_id=esc.case_id,
            template="escalation_opened",
            to_queue=esc.queue,
            context=escalation_logic.notice_context(esc, self._input, workflow.now()),
        )
        self._send(request)

    def _send(self, request: EmailRequest) -> None:
        """Beside the escalation, never in its way; the run waits for it before it ends."""
        self._emails.append(
            workflow.start_activity(
                "send_email",
                request,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=EMAIL_RETRY,
            )
        )

    async def _tell_case(self) -> None:
        while self._case_events:
            event = self._case_events.pop(0)
            handle = workflow.get_external_workflow_handle(self._esc.case_id)
            try:
                await handle.signal("escalation_event", event)
            except Exception:
                workflow.logger.info("case %s no longer takes signals", self._esc.case_id)

    async def _project(self) -> None:
        revision = self._esc.revision
        await workflow.execute_local_activity(
            PROJECT_ESCALATION,
            self._esc,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PROJECTION_RETRY,
        )
        self._projected_revision = max(self._projected_revision, revision)

    @workflow.query(name="snapshot")
    def snapshot(self) -> EscalationSnapshot:
        return self._esc

    @workflow.signal(name="note")
    def note(self, note: EscalationNote) -> None:
        """Someone raised the escalated work again: a note on this escalation, or, once
        resolved, back to the case to open a new one."""
        if not escalation_logic.add_note(self._esc, note.by, note.note, workflow.now()):
            self._case_events.append(
                EscalationEvent(
                    escalation_id=self._esc.id,
                    event=NOTE_DECLINED,
                    actor=note.by,
                    note=note.note,
                    status=self._esc.status.value,
                )
            )

    @workflow.signal(name="task_decided")
    def task_decided(self, decision: TaskDecision) -> None:
        escalation_logic.settle(
            self._esc, decision.by, decision.outcome, decision.note, workflow.now()
        )

    @workflow.update(name="act")
    def act(self, action: LeadAction) -> EscalationSnapshot:
        try:
            escalation_logic.apply_action(self._esc, action, workflow.now())
        except CaseRuleError as exc:
            raise rule_error(exc) from None
        self._case_events.append(
            EscalationEvent(
                escalation_id=self._esc.id,
                event=action.action,
                actor=action.actor.name,
                note=action.note,
                status=self._esc.status.value,
            )
        )
        return self._esc

    @act.validator
    def _validate_act(self, action: LeadAction) -> None:
        try:
            escalation_logic.check_action(self._esc, action)
        except CaseRuleError as exc:
            raise rule_error(exc) from None
