"""An escalation: a case of type `escalation`, owned by tier-2, with its own SLA ladder."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
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
    from workflows.case_workflow import HYPERCARE_PATCH, rule_error
    from workflows.loop import ReadModelLoop, Round

# Email never blocks the escalation: it is sent alongside, retried for about a day.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=150,
)

# Patch: the board is written by a regular activity, after the workflow task that made the
# state is persisted (escalations started before keep their local activity).
ESCALATION_PROJECT_AFTER_COMMIT = "escalation-project-after-commit"


@workflow.defn(name="EscalationWorkflow")
class EscalationWorkflow(ReadModelLoop):
    _projection_activity = PROJECT_ESCALATION

    @workflow.init
    def __init__(self, inp: EscalationInput) -> None:
        self._input = inp
        self._esc = escalation_logic.open_escalation(inp, workflow.now())
        self._projected_revision = 0
        self._project_after_commit = False
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
        # Patched, and asked first, before any local activity (see CaseWorkflow.run): since,
        # the board shows only states Temporal persisted; a local activity wrote a state
        # from inside a workflow task Temporal could still lose, and it then outranked
        # every later projection of the true one until the reconciler replaced it.
        self._project_after_commit = workflow.patched(ESCALATION_PROJECT_AFTER_COMMIT)
        self._notify_level()
        # Patched, asked only for a breach under hypercare (escalations before had none).
        if inp.hypercare is not None and workflow.patched(HYPERCARE_PATCH):
            self._notify_sop_owner(inp.hypercare)
        await self.run_loop()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self._emails, return_exceptions=True)
        await self._tell_case()  # a raise that came after the resolution goes back
        return self._esc

    # --- the loop's rounds (workflows/loop.py holds their shape) ---------------------------

    def _revision(self) -> int:
        return self._esc.revision

    async def _prepare_round(self) -> None:
        await self._tell_case()

    async def _work_round(self) -> Round:
        if self._esc.status == EscalationStatus.RESOLVED and not self._behind():
            return Round.DONE
        return Round.SLEEP

    def _behind(self) -> bool:
        return self._read_model_behind() or bool(self._case_events)

    def _projection(self) -> EscalationSnapshot:
        return self._esc

    def _next_deadline(self) -> datetime | None:
        return escalation_logic.level_deadline(self._esc)

    def _deadline_reached(self, now: datetime) -> None:
        if escalation_logic.breach_level(self._esc, self._input, now):
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
