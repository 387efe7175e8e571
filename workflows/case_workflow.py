"""The one generic case workflow: interprets the SOP template carried in its input.

Claims, releases, completions, pauses, reassignments and escalations are Workflow Updates.
Their validators reject what the case does not allow (nothing lands in history); handlers
change state without awaiting, so two racing claims can never both win. The main loop
keeps the SQL read model in step, sleeps on Temporal timers until the next SLA deadline,
and starts an escalation workflow for every breach or raised escalation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from access.policy import Action
    from activities.billing import BILLING_CALL, BUSINESS_ERROR, BillingRequest
    from activities.email import EmailRequest, EmailResult, InlineTemplate
    from activities.read_model import PROJECT_CASE
    from domain.case_models import (
        CASE_ROUTE,
        Actor,
        ApplyCalendars,
        CaseInput,
        CaseSnapshot,
        CaseStatus,
        ClaimTask,
        CommandResult,
        CompleteTask,
        EscalateCase,
        EscalationEvent,
        EscalationLink,
        HypercareWindow,
        MigrateSop,
        PauseTask,
        PendingAction,
        ReassignTask,
        ReleaseTask,
        ResumeTask,
        Task,
        TaskStatus,
        WaitingOn,
    )
    from domain.escalation_models import EscalationInput, EscalationKind, TaskDecision
    from escalations.calendars import CalendarFacts, pin, pinned_facts
    from sop_templates.schema import BillingStep, EmailStep
    from workflows import case_carry, case_logic, case_outages, case_sla, case_waiting
    from workflows.case_logic import CaseRuleError
    from workflows.loop import ReadModelLoop, Round, never

T = TypeVar("T")

# An SMTP or billing outage only delays a case: retry with backoff, without end (cases
# started before `outage-visible`; since, in rounds the case sees: OUTAGE_ROUND).
OUTAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5)
)
# One round of attempts at a billing call or an email; the case records each failed round
# (`case_outages`) and waits a growing backoff on a timer before the next.
OUTAGE_ROUND = RetryPolicy(
    initial_interval=case_outages.ROUND_INITIAL_INTERVAL,
    maximum_interval=case_outages.MAX_BACKOFF,
    maximum_attempts=case_outages.ROUND_ATTEMPTS,
)


# Patch: an SOP error at run time opens a task for a person (case_logic.stall).
SOP_ERRORS_BECOME_WORK = "sop-errors-become-work"
# Patch: the read model is written by a regular activity (after the workflow task commits).
PROJECT_AFTER_COMMIT = "project-after-commit"
# Patch: an email that fails for good becomes a task for a person (retry/skip).
EMAIL_FAILURE_PATCH = "email-failure-task"
# Patch: a run continues as new once it is long (cases recorded before never did).
CONTINUE_AS_NEW = "continue-as-new"
# Patch: billing and SMTP outages are retried in rounds, on the case (attempts, last error).
OUTAGE_VISIBLE = "outage-visible"
# Patch: a manual escalation of work already escalated joins the open escalation.
ESCALATIONS_JOIN_PATCH = "escalations-join"
# Patch: a case opened in its SOP version's hypercare window records it, its tasks warn
# earlier, and its breaches also notify the SOP owner (the escalation sends the notice).
HYPERCARE_PATCH = "hypercare"
# Patch: while a billing call waits out an outage, the loop's other work goes on.
BILLING_BESIDE_THE_LOOP = "billing-beside-the-loop"
# Patch: the SLA timer is kept across changes and re-armed only when the deadline moves.
SLA_TIMER_REARM = "sla-timer-rearm"


@dataclass(frozen=True)
class SlaTimer:
    """A Temporal timer armed for an SLA deadline (`case_sla.next_deadline`)."""

    deadline: datetime
    sleeping: asyncio.Task[None]


@dataclass(frozen=True)
class OutageNews:
    """A round of a call that failed (`error`), or the call through after an outage
    (`error` None): told by a sending coroutine, recorded on the case by the main loop."""

    system: str
    step: str
    key: str
    at: datetime
    error: str | None = None
    retry_at: datetime | None = None


def _ran_out(exc: ActivityError) -> bool:
    """The round used up its attempts: an outage (a refusal is not retried at all)."""
    return exc.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED


def _error_text(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return f"{cause.type}: {cause.message}"
    return str(cause or exc)


def _failed_for_good(sending: asyncio.Task[dict[str, Any]]) -> bool:
    done = sending.done() and not sending.cancelled() and sending.exception() is None
    return done and "error" in sending.result()


def rule_error(exc: CaseRuleError) -> ApplicationError:
    """The Temporal form of a refused command: its type is the kind the API maps to HTTP."""
    return ApplicationError(exc.message, exc.details, type=exc.kind, non_retryable=True)


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow(ReadModelLoop):
    _projection_activity = PROJECT_CASE

    @workflow.init
    def __init__(self, inp: CaseInput) -> None:
        self._input = inp.model_copy(update={"state": None})
        if inp.state is not None:
            # A run continued from the previous one: the case goes on where it stood, its
            # read model caught up (the previous run drained before handing over).
            for facts in inp.calendars:
                pin(facts)
            self._case = inp.state
        else:
            # Patched: cases started before keep failing their workflow task on an SOP error.
            errors_become_work = workflow.patched(SOP_ERRORS_BECOME_WORK)
            # Patched, asked only for a case opened in a hypercare window (none had one before).
            if inp.hypercare is not None and not workflow.patched(HYPERCARE_PATCH):
                inp = inp.model_copy(update={"hypercare": None})
                self._input = self._input.model_copy(update={"hypercare": None})
            self._case = case_logic.open_case(
                inp, workflow.now(), errors_become_work=errors_become_work
            )
        self._projected_revision = inp.projected_revision
        self._updates = 0  # Updates this run has handled (Temporal caps a run's total)
        self._continuing = False  # the run has decided to continue as new once drained
        self._projected_entries = 0  # history entries already sent to the read model
        self._project_after_commit = False
        # Emails on their way, in the order they were queued: (step id, the sending task).
        self._emails: list[tuple[str, asyncio.Task[dict[str, Any]]]] = []
        self._outages_visible = False
        # Outage rounds the sending coroutines saw, for the main loop to record.
        self._outage_news: list[OutageNews] = []
        # The timer armed for the next SLA deadline, kept while that deadline stands.
        self._sla_timer: SlaTimer | None = None
        self._keep_sla_timer = False

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseSnapshot:
        # Patched, and asked first, before any local activity: a local activity's result can
        # reach the workflow one workflow task later than its marker, and a `patched` asked
        # right after it then answers otherwise on replay. Cases started since project by
        # a regular activity, which also runs only once the state it writes is persisted.
        self._project_after_commit = workflow.patched(PROJECT_AFTER_COMMIT)
        self._outages_visible = workflow.patched(OUTAGE_VISIBLE)
        self._keep_sla_timer = workflow.patched(SLA_TIMER_REARM)
        await self.run_loop()
        await workflow.wait_condition(workflow.all_handlers_finished)
        # Patched: cases closed before archiving existed must replay without this child.
        if workflow.patched("archive-on-close"):
            await workflow.start_child_workflow(
                "ArchiveCaseWorkflow",
                self._case.id,
                id=f"{self._case.id}.archive",
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        return self._result()

    def _result(self) -> CaseSnapshot:
        """The closed case without its history: Temporal stores the result in the run's
        last event, and the history (already in the run's events and the read model's
        projections) could take it past the bound on an event's size. Replay does not
        compare a result, so runs recorded with the history in it replay unchanged."""
        return self._case.model_copy(
            update={"history": [], "history_offset": len(self._case.history)}
        )

    # --- the loop's rounds (workflows/loop.py holds their shape) ---------------------------

    def _revision(self) -> int:
        return self._case.revision

    async def _prepare_round(self) -> None:
        self._take_outage_news()
        self._queue_pending_email()
        self._queue_email_retries()
        self._take_failed_emails()

    async def _work_round(self) -> Round:
        await self._start_escalations()
        await self._settle_decided_approvals()
        if self._case.pending_action is not None:
            await self._carry_out(self._case.pending_action)
            return Round.AGAIN
        if self._case.status == CaseStatus.CLOSED and not self._read_model_behind():
            if not self._emails:
                return Round.DONE
            await self._collect_emails()
            return Round.AGAIN
        if self._continue_due():
            # Before the check below: under a steady stream of Updates a round always
            # sees one that landed meanwhile, and the case would never hand over.
            await self._continue_as_new_when_drained()
            return Round.AGAIN
        return Round.SLEEP

    def _continue_due(self) -> bool:
        """Whether this run is long enough to hand the case to a new run: Temporal suggests
        it, the run took its share of Updates, or the case holds enough of this run's past
        (history entries, done tasks) that every event carrying the case grows large."""
        if self._continuing:
            return True
        if self._case.status != CaseStatus.OPEN or not self._project_after_commit:
            return False
        inp = self._input
        long = self._updates >= inp.continue_after_updates
        long = long or case_carry.compactable_bytes(self._case) >= inp.continue_above_bytes
        if not (long or workflow.info().is_continue_as_new_suggested()):
            return False
        # Patched, asked only once the run is long: shorter recorded histories replay as
        # they were, and a case recorded before goes on in one run as it did.
        self._continuing = workflow.patched(CONTINUE_AS_NEW)
        return self._continuing

    async def _continue_as_new_when_drained(self) -> None:
        """Continue as new once nothing is in flight: every Update handled, escalations
        started, no billing call pending and every email's fate recorded. Returns (to the
        loop) while something is still on its way. The read model is brought up to date
        first; what Updates change after that the new run projects as it starts (waiting
        for a moment with none in flight could wait for ever on a busy case)."""
        if self._emails:
            if all(sending.done() for _, sending in self._emails):
                await self._collect_emails()  # all done: records each, without waiting
                return
            seen = self._case.revision
            await workflow.wait_condition(
                lambda: (
                    self._case.revision != seen
                    or all(sending.done() for _, sending in self._emails)
                )
            )
            return
        if self._read_model_behind():
            await self._project()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._case.pending_action is not None or self._outage_news:
            return  # a handler sent the case to an automatic step: the loop takes it first
        if any(not link.started for link in self._case.escalations):
            return
        # Never from a handler: the run method is the only place that continues as new.
        workflow.continue_as_new(self._carried_input())

    def _carried_input(self) -> CaseInput:
        digests = set(self._case.calendars.values())
        digests |= {t.sla.calendar_digest for t in self._case.tasks if t.sla is not None}
        calendars = [pinned_facts(d) for d in sorted(d for d in digests if d)]
        return self._input.model_copy(
            update={
                "state": case_carry.carry_on(self._case),
                "calendars": calendars,
                "projected_revision": self._projected_revision,
            }
        )

    def _next_deadline(self) -> datetime | None:
        return case_sla.next_deadline(self._case)

    def _woken(self) -> bool:
        return self._failed_emails() != [] or self._outage_news != []

    def _deadline_reached(self, now: datetime) -> None:
        if self._case.waiting_until and now >= self._case.waiting_until:
            case_logic.wait_over(self._case, self._input.template, now)
        case_sla.fire_deadlines(self._case, now)

    async def _sleep_until_change_or_deadline(self, until: Callable[[], bool] = never) -> None:
        """As the skeleton's, but on a kept SLA timer (patched: cases before re-armed it each
        round, as the skeleton's sleep does)."""
        if not self._keep_sla_timer:
            await super()._sleep_until_change_or_deadline(until)
            return
        seen = self._revision()
        deadline = self._next_deadline()
        timeout = (deadline - workflow.now()).total_seconds() if deadline else None
        if timeout is None or timeout > 0:
            # A Temporal timer: it fires at the deadline even if every worker restarts.
            timer = self._timer_for(deadline, timeout)

            def fired() -> bool:
                return timer is not None and timer.done()

            await workflow.wait_condition(
                lambda: self._revision() != seen or self._woken() or until() or fired()
            )
            if not fired():
                return
        self._deadline_reached(workflow.now())

    def _timer_for(
        self, deadline: datetime | None, timeout: float | None
    ) -> asyncio.Task[None] | None:
        """The Temporal timer for `deadline`: the one already armed while the deadline stands
        (most changes, such as a claim, leave it where it was: no timer cancelled and started
        again for each), else a new one, the old cancelled. None when nothing is due."""
        kept = self._sla_timer
        if kept is not None and kept.deadline == deadline and not kept.sleeping.done():
            return kept.sleeping
        if kept is not None and not kept.sleeping.done():
            kept.sleeping.cancel()
        self._sla_timer = None
        if deadline is None or timeout is None:
            return None
        sleeping = asyncio.create_task(workflow.sleep(timeout))
        self._sla_timer = SlaTimer(deadline, sleeping)
        return sleeping

    def _projection(self) -> CaseSnapshot:
        if not self._project_after_commit:
            return self._case  # cases started before: a local activity, as they recorded it
        # Only the history entries the read model has not had yet: the activity's input is
        # in Temporal's history, and the whole past in every one would grow it
        # quadratically (the read model keeps no history; auditors replay it).
        return self._case.model_copy(
            update={
                "history": self._case.history[self._projected_entries :],
                "history_offset": self._projected_entries,
            }
        )

    def _projected(self, payload: CaseSnapshot) -> None:
        if self._project_after_commit:
            self._projected_entries = payload.history_offset + len(payload.history)

    async def _start_escalations(self) -> None:
        await self._start_new_escalations()
        if self._case.escalation_notes:
            await self._deliver_escalation_notes()
            await self._start_new_escalations()  # those whose escalation ended meanwhile

    async def _deliver_escalation_notes(self) -> None:
        """Manual escalations that joined an open one: each is a note on it."""
        for note in list(self._case.escalation_notes):
            try:
                await workflow.get_external_workflow_handle(note.escalation_id).signal("note", note)
            except Exception:
                case_sla.note_undeliverable(self._case, note, workflow.now())
            else:
                case_sla.note_delivered(self._case, note)

    async def _start_new_escalations(self) -> None:
        for link in [e for e in self._case.escalations if not e.started]:
            await workflow.start_child_workflow(
                "EscalationWorkflow",
                self._escalation_input(link),
                id=link.id,
                # An escalation outlives the case's close: a lead still has to answer it.
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
            link.started = True

    async def _settle_decided_approvals(self) -> None:
        """An approval decided as a task resolves its escalation on the lead board too."""
        for link in self._case.escalations:
            task = self._case.task(link.task_id) if link.task_id else None
            if link.kind != EscalationKind.APPROVAL or not link.started or link.settled:
                continue
            if task is None or task.status != TaskStatus.DONE:
                continue
            link.settled = True
            decision = TaskDecision(
                by=task.assignee or "", outcome=task.outcome or "", note=task.note
            )
            try:
                await workflow.get_external_workflow_handle(link.id).signal(
                    "task_decided", decision
                )
            except Exception:
                workflow.logger.info("escalation %s no longer takes signals", link.id)

    async def _carry_out(self, action: PendingAction) -> None:
        """An automatic step: send the SOP's email, or call billing; then move on. An SOP
        error on the way (an argument that does not evaluate) becomes work for a person."""
        try:
            await self._carry_out_step(action)
        except case_logic.SOP_RUNTIME_ERRORS as exc:
            self._stall_or_raise(action.step, exc)

    def _stall_or_raise(self, step_id: str, exc: BaseException) -> None:
        if not self._case.errors_become_work:
            raise exc
        error = case_logic.error_text(exc)
        case_logic.stall(self._case, self._input.template, step_id, error, workflow.now())

    async def _carry_out_step(self, action: PendingAction) -> None:
        template = self._input.template
        step = template.step(action.step)
        if isinstance(step, EmailStep):
            result = await self._send(step, self._email_request(step, action))
        else:
            assert isinstance(step, BillingStep)
            try:
                called = await self._call_billing(step, action)
            except ActivityError as exc:
                cause = exc.cause
                if isinstance(cause, ApplicationError) and cause.type == BUSINESS_ERROR:
                    error = cause.details[0] if cause.details else {"message": cause.message}
                    case_logic.action_refused(self._case, template, error, workflow.now())
                    return
                raise
            if called is None:
                return  # the money checks held it back (see _call_billing)
            result = called
        case_logic.action_done(self._case, template, result, workflow.now())

    def _queue_pending_email(self) -> None:
        """Mail goes beside the case, never in its way: an SMTP outage must not hold up an
        agent's task; the case only waits for its emails before it ends."""
        template = self._input.template
        while (action := self._case.pending_action) is not None and action.kind == "email":
            # Patched: cases that waited on each email before going on must replay that way.
            if not workflow.patched("email-in-background"):
                return
            step = template.step(action.step)
            assert isinstance(step, EmailStep)
            try:
                request = self._email_request(step, action)
            except case_logic.SOP_RUNTIME_ERRORS as exc:
                self._stall_or_raise(step.id, exc)
                continue
            case_logic.email_queued(self._case, template, request.to, workflow.now())
            self._emails.append((step.id, asyncio.create_task(self._send_quietly(step, request))))

    async def _call_billing(
        self, step: BillingStep, action: PendingAction
    ) -> dict[str, Any] | None:
        """Billing's answer; None when the money checks sent the case to a person or to its
        approval step instead (nothing was sent)."""
        template = self._input.template
        args = {k: case_logic.evaluate(self._case, template, v) for k, v in step.args.items()}
        # Patched: cases that called billing before these checks existed replay that way.
        if workflow.patched("money-controls") and not case_logic.check_billing_call(
            self._case, template, step, args, workflow.now()
        ):
            return None
        request = BillingRequest(
            action=step.action,
            idempotency_key=action.idempotency_key,
            case_id=self._case.id,
            args=args,
            case_customer_id=self._case.customer_id,
            case_currency=self._case.currency,
        )

        def call(policy: RetryPolicy) -> Awaitable[dict[str, Any]]:
            return workflow.execute_activity(
                BILLING_CALL,
                request,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=policy,
                result_type=dict,
            )

        if not self._outages_visible:
            return await call(OUTAGE_RETRY)
        key = action.idempotency_key
        # Patched: cases that waited on the call alone (asked only here, at a billing call).
        if not workflow.patched(BILLING_BESIDE_THE_LOOP):
            return await self._through_outages(
                case_outages.BILLING, step.id, key, lambda: call(OUTAGE_ROUND), main_loop=True
            )
        calling = asyncio.create_task(
            self._through_outages(
                case_outages.BILLING, step.id, key, lambda: call(OUTAGE_ROUND), main_loop=False
            )
        )
        await self._rounds_while_calling(calling)
        return await calling

    async def _rounds_while_calling(self, calling: asyncio.Task[Any]) -> None:
        """The loop's rounds while a billing call is out (an outage can last hours): record
        its outage rounds, keep the read model up, start escalations raised meanwhile and
        deliver their notes, turn an email that failed for good into a task, send those a
        person asked again, fire what falls due. Only the rounds touch the case; the call
        leaves its news for them."""

        async def work() -> Round:
            await self._start_escalations()
            await self._settle_decided_approvals()
            return Round.DONE if calling.done() else Round.SLEEP

        await self._rounds(work, until=calling.done)
        self._take_outage_news()  # the call went through (or was refused): recorded first

    async def _through_outages(
        self,
        system: str,
        step_id: str,
        key: str,
        call: Callable[[], Awaitable[T]],
        *,
        main_loop: bool,
    ) -> T:
        """`call` in rounds until it goes through: each round that runs out of attempts is
        news for the case, then a backoff timer. Only the main loop records news on the
        case; a coroutine beside it (an email) leaves it for the loop."""
        attempts = 0
        while True:
            try:
                result = await call()
            except ActivityError as exc:
                if not _ran_out(exc):
                    if attempts:  # it answered (a refusal): the outage is over
                        self._tell(OutageNews(system, step_id, key, workflow.now()), main_loop)
                    raise
                attempts += case_outages.ROUND_ATTEMPTS
                now = workflow.now()
                wait = case_outages.backoff(attempts)
                news = OutageNews(system, step_id, key, now, _error_text(exc), now + wait)
                self._tell(news, main_loop)
                if main_loop and self._read_model_behind():
                    await self._project()
                await workflow.sleep(wait)
                continue
            if attempts:
                self._tell(OutageNews(system, step_id, key, workflow.now()), main_loop)
            return result

    def _tell(self, news: OutageNews, main_loop: bool) -> None:
        self._outage_news.append(news)
        if main_loop:
            self._take_outage_news()

    def _take_outage_news(self) -> None:
        """Record on the case what the outage rounds saw (main loop only)."""
        news, self._outage_news = self._outage_news, []
        for item in news:
            if item.error is None:
                case_outages.call_went_through(self._case, item.key, item.at)
                continue
            assert item.retry_at is not None
            case_outages.round_failed(
                self._case, item.system, item.step, item.key, item.error, item.at, item.retry_at
            )

    def _email_request(self, step: EmailStep, action: PendingAction) -> EmailRequest:
        template = self._input.template
        # The case's language picks a variant; steps without variants (every case before
        # them) take `step.template` as ever, so no patch is needed.
        name = step.template_for(self._case.data.get("language"))
        email = template.emails[name]
        return EmailRequest(
            idempotency_key=action.idempotency_key,
            case_id=self._case.id,
            template=f"{template.name}.v{template.version}.{name}",
            context=case_logic.action_context(self._case, template),
            to=case_logic.recipients(case_logic.evaluate(self._case, template, step.to)),
            inline=InlineTemplate(subject=email.subject, text=email.text, html=email.html),
        )

    async def _send(
        self, step: EmailStep, request: EmailRequest, policy: RetryPolicy = OUTAGE_RETRY
    ) -> dict[str, Any]:
        result = await workflow.execute_activity(
            "send_email",
            request,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=policy,
            result_type=EmailResult,
        )
        return {"template": step.template, "to": result.recipients, "status": result.status}

    async def _send_quietly(self, step: EmailStep, request: EmailRequest) -> dict[str, Any]:
        """Send beside the case, touching nothing of it: only the main loop changes the case
        (when it collects the results), so a replay takes the very same path."""
        try:
            if not self._outages_visible:
                return await self._send(step, request)
            return await self._through_outages(
                case_outages.EMAIL,
                step.id,
                request.idempotency_key,
                lambda: self._send(step, request, OUTAGE_ROUND),
                main_loop=False,
            )
        except ActivityError as exc:
            # Only a message that can never go (it does not render, a bad address) ends here
            # (outages retry without end); the main loop gives it to a person.
            failure = {"template": step.template, "to": request.to, "error": str(exc.cause)}
            if isinstance(exc.cause, ApplicationError) and exc.cause.type:
                failure["error_type"] = exc.cause.type
            return failure

    async def _collect_emails(self) -> None:
        """Before the case ends: wait for its emails and record what became of each."""
        emails, self._emails = self._emails, []
        for step_id, sending in emails:
            if self._outages_visible:
                await self._record_outages_until_done(sending)
            result = await sending
            failed = "error" in result
            if failed and workflow.patched(EMAIL_FAILURE_PATCH):
                case_logic.email_refused(
                    self._case, self._input.template, step_id, result, workflow.now()
                )
                continue
            case_logic.email_finished(self._case, step_id, result, workflow.now(), failed=failed)

    async def _record_outages_until_done(self, sending: asyncio.Task[dict[str, Any]]) -> None:
        """A closing case still shows an email's outage while it waits for that email."""
        while not sending.done():
            await workflow.wait_condition(lambda: sending.done() or self._outage_news != [])
            self._take_outage_news()
            if self._read_model_behind():
                await self._project()

    def _failed_emails(self) -> list[tuple[str, asyncio.Task[dict[str, Any]]]]:
        return [(step_id, t) for step_id, t in self._emails if _failed_for_good(t)]

    def _take_failed_emails(self) -> None:
        """An email that failed for good becomes a task for a person as soon as it fails; a
        case that reached its end meanwhile stays open until that person decides."""
        template = self._input.template
        failed = self._failed_emails()
        held = self._case.status == CaseStatus.CLOSED and case_logic.open_email_tasks(
            self._case, template
        )
        # Patched: the check runs only when there is something to do, so histories from
        # before it (which never saw an email fail) replay without its marker.
        if not (failed or held) or not workflow.patched(EMAIL_FAILURE_PATCH):
            return
        for entry in failed:
            self._emails.remove(entry)
            step_id, sending = entry
            case_logic.email_refused(
                self._case, template, step_id, sending.result(), workflow.now()
            )
        case_logic.keep_open_for_email_tasks(self._case, template, workflow.now())

    def _queue_email_retries(self) -> None:
        """Emails a person asked to send again go beside the case, like the first try."""
        template = self._input.template
        for retry in list(self._case.email_retries):
            step = template.step(retry.step)
            assert isinstance(step, EmailStep)
            request = self._email_request(step, retry)
            case_logic.email_requeued(self._case, template, retry, request.to, workflow.now())
            self._emails.append((step.id, asyncio.create_task(self._send_quietly(step, request))))

    def _escalation_input(self, link: EscalationLink) -> EscalationInput:
        # Resolved at intake from the matrix version the case pinned: replays route the same.
        routes = self._input.escalation_routes
        route = routes.get(link.queue) or routes[CASE_ROUTE]
        return EscalationInput(
            escalation_id=link.id,
            case_id=self._case.id,
            case_type=self._case.type,
            task_id=link.task_id,
            step=link.step,
            kind=EscalationKind(link.kind),
            reason=link.reason,
            region=self._case.region,
            vendor=self._case.vendor,
            opened_by=link.opened_by,
            late_by_seconds=link.late_by_seconds,
            breached_at=link.opened_at - timedelta(seconds=link.late_by_seconds)
            if link.kind == EscalationKind.SLA_BREACH
            else None,
            route=route,
            public_url=self._input.public_url,
            calendar=self._pinned(self._case.region),
            hypercare=self._owner_told_of(link),
        )

    def _owner_told_of(self, link: EscalationLink) -> HypercareWindow | None:
        """The hypercare window whose SOP owner hears of this escalation: a breach inside it."""
        window = self._case.hypercare
        if window is None or link.kind != EscalationKind.SLA_BREACH:
            return None
        return window if window.covers(link.opened_at) else None

    def _pinned(self, calendar: str) -> CalendarFacts | None:
        digest = self._case.calendars.get(calendar)
        return pinned_facts(digest) if digest else None

    @workflow.query(name="snapshot")
    def snapshot(self) -> CaseSnapshot:
        return self._case

    @workflow.query(name="waiting_on")
    def waiting_on(self, at: datetime) -> WaitingOn:
        """What the case waits on at `at` (the asker's clock; never before the case's own
        last moment): counted here, where the case's calendars are pinned."""
        now = max(at, workflow.now())
        return case_waiting.waiting_on(self._case, now, self._input.template)

    @workflow.signal(name="escalation_event")
    def escalation_event(self, event: EscalationEvent) -> None:
        case_sla.record_escalation_event(self._case, event, workflow.now())

    @workflow.update(name="claim_task")
    def claim_task(self, cmd: ClaimTask) -> CommandResult:
        return self._apply(lambda: case_logic.claim(self._case, cmd, workflow.now()))

    @claim_task.validator
    def _validate_claim(self, cmd: ClaimTask) -> None:
        self._check(lambda: case_logic.check_claim(self._case, cmd))

    @workflow.update(name="release_task")
    def release_task(self, cmd: ReleaseTask) -> CommandResult:
        return self._apply(lambda: case_logic.release(self._case, cmd, workflow.now()))

    @release_task.validator
    def _validate_release(self, cmd: ReleaseTask) -> None:
        self._check(lambda: self._may_work_own(cmd.task_id, cmd.actor))
        self._check(lambda: case_logic.check_release(self._case, cmd))

    @workflow.update(name="complete_task")
    def complete_task(self, cmd: CompleteTask) -> CommandResult:
        return self._apply(
            lambda: case_logic.complete(self._case, self._input.template, cmd, workflow.now())
        )

    @complete_task.validator
    def _validate_complete(self, cmd: CompleteTask) -> None:
        self._check(lambda: self._may_work_own(cmd.task_id, cmd.actor))
        self._check(lambda: case_logic.check_complete(self._case, cmd, self._input.template))

    @workflow.update(name="pause_task")
    def pause_task(self, cmd: PauseTask) -> CommandResult:
        return self._apply(lambda: case_sla.pause(self._case, cmd, workflow.now()))

    @pause_task.validator
    def _validate_pause(self, cmd: PauseTask) -> None:
        self._check(lambda: self._may_work_own(cmd.task_id, cmd.actor))
        self._check(lambda: case_sla.check_pause(self._case, cmd, workflow.now()))

    @workflow.update(name="resume_task")
    def resume_task(self, cmd: ResumeTask) -> CommandResult:
        return self._apply(lambda: case_sla.resume(self._case, cmd, workflow.now()))

    @resume_task.validator
    def _validate_resume(self, cmd: ResumeTask) -> None:
        self._check(lambda: self._may_work_own(cmd.task_id, cmd.actor))
        self._check(lambda: case_sla.check_resume(self._case, cmd))

    @workflow.update(name="reassign_task")
    def reassign_task(self, cmd: ReassignTask) -> CommandResult:
        return self._apply(lambda: case_sla.reassign(self._case, cmd, workflow.now()))

    @reassign_task.validator
    def _validate_reassign(self, cmd: ReassignTask) -> None:
        self._check(lambda: case_sla.check_reassign(self._case, cmd))

    @workflow.update(name="migrate_sop")
    def migrate_sop(self, cmd: MigrateSop) -> CommandResult:
        # A safe point: handlers run between the loop's steps, never inside one.
        result = self._apply(lambda: case_logic.migrate(self._case, cmd, workflow.now()))
        self._input = self._input.model_copy(update={"template": cmd.template, "sop": cmd.sop})
        return result

    @migrate_sop.validator
    def _validate_migrate(self, cmd: MigrateSop) -> None:
        self._check(lambda: case_logic.check_migrate(self._case, cmd, self._input.template))

    @workflow.update(name="apply_calendars")
    def apply_calendars(self, cmd: ApplyCalendars) -> list[str]:
        changed: list[str] = []

        def change() -> None:
            changed.extend(case_sla.apply_calendars(self._case, cmd, workflow.now()))

        self._apply(change)
        return changed

    @apply_calendars.validator
    def _validate_apply_calendars(self, cmd: ApplyCalendars) -> None:
        self._check(lambda: case_sla.check_apply_calendars(self._case, cmd))

    @workflow.update(name="escalate")
    def escalate(self, cmd: EscalateCase) -> CommandResult:
        # Patched, and asked only when there is an open escalation to join: cases that
        # opened a second one replay that way.
        join = case_sla.joins_open_escalation(self._case, cmd) and workflow.patched(
            ESCALATIONS_JOIN_PATCH
        )
        result = self._apply(lambda: case_sla.escalate(self._case, cmd, workflow.now(), join=join))
        _, joined = case_sla.escalated_by(self._case)
        return result.model_copy(update={"joined": joined})

    @escalate.validator
    def _validate_escalate(self, cmd: EscalateCase) -> None:
        self._check(lambda: case_sla.check_escalate(self._case, cmd))

    def _may_work_own(self, task_id: str, actor: Actor) -> None:
        # Validators only (see case_logic.authorize_task): the policy's word on the task.
        case_logic.authorize_task(self._case, task_id, actor, Action.WORK_TASK)

    def _check(self, rule: Callable[[], Any]) -> None:
        try:
            rule()
        except CaseRuleError as exc:
            raise rule_error(exc) from None

    def _apply(self, change: Callable[[], Any]) -> CommandResult:
        # Handlers never await: the check and the change happen in one step of the loop.
        self._updates += 1
        before = self._case.model_copy(deep=True)
        try:
            concerned = change()
        except CaseRuleError as exc:
            self._case = before  # a refused change leaves the case exactly as it was
            raise rule_error(exc) from None
        return CommandResult(
            case_id=self._case.id,
            revision=self._case.revision,
            status=self._case.status,
            task=concerned if isinstance(concerned, Task) else None,
            escalation=concerned if isinstance(concerned, EscalationLink) else None,
        )
