"""The shape of an SOP template version: what an SOP owner writes in YAML.

A template is data interpreted by the one generic case workflow (`workflows/`). Each step
kind is one model below, tagged by `kind` (`STEP_KINDS`); what the interpreter does with it
is its module in `workflows/steps/`. Conditions use the safe expression language in
`expressions.py`.

Money controls: a billing step whose action moves money (`MONEY_ACTIONS`) declares its
`approval` rule, and task steps declare the typed `fields` their data may carry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from domain.values import CaseType

StepId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
QueueName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64)]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
# A BCP 47 language tag as billing's master data gives it: "fr", "en", "pt-BR".
LanguageTag = Annotated[
    str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35)
]

# What a value in a task's `data` may be (checked when the task is completed, see
# `workflows/task_fields.py`): `amount` an ASCII decimal text, `invoice` one of the case's
# invoice ids, `id` any well-formed id, `date` an ISO date, `text` a short single text.
FieldType = Literal["amount", "invoice", "id", "date", "text"]
TaskFields = dict[FieldName, FieldType]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepSla(_Strict):
    """An SLA on a step: a business-time budget on a calendar (the case's region by default)."""

    budget: str
    calendar: str | None = None
    warning: float = Field(default=0.8, gt=0, lt=1)


class HumanTaskStep(_Strict):
    kind: Literal["human_task"]
    id: StepId
    title: str = ""
    queue: QueueName
    priority: int = Field(default=50, ge=0, le=100)
    outcomes: list[StepId] = Field(min_length=1)
    transitions: dict[str, StepId]
    sla: StepSla | None = None
    store_as: str | None = None  # keep the completing person's data in case.data[store_as]
    # An approval: the case also puts it on the lead board (an escalation of kind approval),
    # where approve/reject decide it.
    approval: bool = False
    # The data a person may give when completing the task, by field; none other is taken.
    # Without `fields` the data is free-form (templates written before typed fields).
    fields: TaskFields | None = None

    def successors(self) -> list[str]:
        """The steps a case can move to from here."""
        return list(self.transitions.values())

    def expressions(self) -> list[str]:
        """The SOP expressions the step evaluates (they may read `params`)."""
        return []


class DecisionBranch(_Strict):
    when: str
    goto: StepId


class DecisionStep(_Strict):
    kind: Literal["decision"]
    id: StepId
    title: str = ""
    branches: list[DecisionBranch] = Field(min_length=1)
    otherwise: StepId

    def successors(self) -> list[str]:
        return [b.goto for b in self.branches] + [self.otherwise]

    def expressions(self) -> list[str]:
        return [b.when for b in self.branches]


class ComputeStep(_Strict):
    """Work values out with expressions (a score, a proposed limit) into case.data[store_as]:
    the rule lives in the template, where the SOP owner can read and version it."""

    kind: Literal["compute"]
    id: StepId
    title: str = ""
    set: dict[str, str] = Field(min_length=1)
    store_as: str
    next: StepId

    def successors(self) -> list[str]:
        return [self.next]

    def expressions(self) -> list[str]:
        return list(self.set.values())


class EndStep(_Strict):
    kind: Literal["end"]
    id: StepId
    title: str = ""
    resolution: str

    def successors(self) -> list[str]:
        return []

    def expressions(self) -> list[str]:
        return []


# Where an email that can never go as it is (it does not render, a bad address) becomes a
# task when its step names no `error_queue`: a leads' queue, as leads work every queue.
# Where a run-time error of the SOP becomes work when its step names no `error_queue`.
DEFAULT_ERROR_QUEUE = "o2c-leads"
# The step intake puts ahead of an SOP's start when billing did not answer at intake
# (api/services/intake.py): no template may name a step so.
INTAKE_CHECK_STEP = "intake_check"
DEFAULT_EMAIL_ERROR_QUEUE = DEFAULT_ERROR_QUEUE


class EmailStep(_Strict):
    """Send one of the SOP's emails; `to` is a condition-language expression (an address).
    An email that cannot be sent as it is opens a task (retry or skip) in `error_queue`."""

    kind: Literal["email"]
    id: StepId
    title: str = ""
    template: str
    to: str
    next: StepId
    error_queue: QueueName | None = None
    # Per-language variants: the case's language (`case.data.language`, from billing's master
    # data at intake) picks the email named here; any other language, or none, `template`.
    languages: dict[LanguageTag, str] = Field(default_factory=dict)

    def successors(self) -> list[str]:
        return [self.next]

    def expressions(self) -> list[str]:
        return [self.to]

    def template_for(self, language: Any) -> str:
        """The email for a case in `language`: its exact tag, else its primary language
        ("pt" for "pt-BR"), else the default `template`."""
        if not isinstance(language, str) or not language:
            return self.template
        return (
            self.languages.get(language)
            or self.languages.get(language.split("-")[0])
            or self.template
        )


BillingAction = Literal[
    "issue_credit_memo",
    "set_credit_hold",
    "release_credit_hold",
    "update_credit_limit",
    "record_promise_to_pay",
    "record_payment_plan",
    "get_exposure",
    "get_customer",
    "payment_status",
    # A dispute case takes its invoices out of dunning, and puts them back with its outcome.
    "open_dispute",
    "close_dispute",
    # A collection's notice, kept in billing with what it dunned (a dispute names the case).
    "record_dunning_notice",
    # The case's customer and invoices are billing's (args customer_id, invoice_ids, region).
    "verify_case",
]
BILLING_ACTIONS: tuple[BillingAction, ...] = get_args(BillingAction)
# Billing actions that move money: their step must declare an `approval` rule.
MONEY_ACTIONS: frozenset[BillingAction] = frozenset({"issue_credit_memo", "update_credit_limit"})


class ApprovalRule(_Strict):
    """When a money-moving billing call needs a person's approval: if its `amount` arg is
    above the `above` expression, the call goes out only after an `approve` of task step
    `step` by a lead or admin for exactly that amount; otherwise the case enters `step`."""

    amount: str  # the name of the billing arg that holds the money
    above: str  # an expression: the threshold, e.g. params.approval_threshold
    step: StepId


class BillingStep(_Strict):
    """A call to the billing system. `args` values are expressions; a refusal by billing
    (a business error) opens a task in `error_queue` with the error attached."""

    kind: Literal["billing"]
    id: StepId
    title: str = ""
    action: BillingAction
    args: dict[str, str] = Field(default_factory=dict)
    store_as: str | None = None  # keep the result in case.data[store_as]
    error_queue: QueueName
    next: StepId
    approval: ApprovalRule | None = None
    # The data a person answering billing's refusal may give (with outcome retry), i.e. the
    # fields the args read from `task.data`; free-form without it (older templates).
    fields: TaskFields | None = None
    # Keep that retry's data in case.data[retry_store_as]: when the retry goes to an approver
    # first, the args still find the corrected values once the approver is the last person.
    retry_store_as: str | None = None

    def successors(self) -> list[str]:
        return [self.next]

    def expressions(self) -> list[str]:
        above = [self.approval.above] if self.approval is not None else []
        return [*self.args.values(), *above]


class WaitStep(_Strict):
    """Wait on a Temporal timer: `until` (an expression giving an ISO date or instant, e.g. a
    promised payment date; a date means the start of that day on the case's calendar) plus
    `grace`, or `after` (a wall-clock duration such as 7d) from the moment the step starts."""

    kind: Literal["wait"]
    id: StepId
    title: str = ""
    until: str | None = None
    grace: str | None = None
    after: str | None = None
    next: StepId

    def successors(self) -> list[str]:
        return [self.next]

    def expressions(self) -> list[str]:
        """`until`, and `after`/`grace` (literal durations, or expressions such as params.x)."""
        return [s for s in (self.until, self.after, self.grace) if s is not None]


class EmailTemplate(_Strict):
    subject: str
    text: str
    html: str | None = None


AnyStep = HumanTaskStep | DecisionStep | ComputeStep | EndStep | EmailStep | BillingStep | WaitStep
Step = Annotated[AnyStep, Field(discriminator="kind")]
STEP_MODELS: tuple[type[AnyStep], ...] = get_args(AnyStep)


def kind_of_model(model: type[AnyStep]) -> str:
    """A step model's `kind` tag, as templates write it."""
    return str(get_args(model.model_fields["kind"].annotation)[0])


# The step kinds' names: `workflows/steps/` has a module for each.
STEP_KINDS: tuple[str, ...] = tuple(kind_of_model(model) for model in STEP_MODELS)


class SopTemplate(_Strict):
    """One version of a standard operating procedure for a case type."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")]
    version: int = Field(ge=1)
    # A case type, or `escalation` (the brief's fourth type, run by its own workflow).
    case_type: Literal[CaseType, "escalation"]
    title: str = ""
    description: str = ""
    start: StepId
    parameters: dict[str, Any] = Field(default_factory=dict)
    # When set, a new case must carry one of these reason codes.
    reason_codes: list[str] = Field(default_factory=list)
    emails: dict[str, EmailTemplate] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> AnyStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"step {step_id!r} is not in SOP {self.name} v{self.version}")

    def queues(self) -> set[str]:
        return {s.queue for s in self.steps if isinstance(s, HumanTaskStep)}

    def calendars(self, region: str) -> set[str]:
        """The business calendars a case of `region` counts its SLAs on."""
        named = {s.sla.calendar for s in self.steps if isinstance(s, HumanTaskStep) and s.sla}
        return {region} | {c for c in named if c}
