"""Validate an SOP template document: every error at once, each with its path."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError, nodes
from pydantic import TypeAdapter, ValidationError

from escalations.calendars import UnknownCalendarError, get_calendar
from escalations.sla_clock import InvalidBudgetError, parse_budget
from sop_templates.expressions import ExpressionError, check_names, compile_expression
from sop_templates.rendering import RenderError, render
from sop_templates.sandbox import EmailSandbox
from sop_templates.schema import (
    INTAKE_CHECK_STEP,
    MONEY_ACTIONS,
    STEP_KINDS,
    AnyStep,
    ApprovalRule,
    BillingStep,
    ComputeStep,
    DecisionStep,
    EmailStep,
    EmailTemplate,
    EndStep,
    HumanTaskStep,
    SopTemplate,
    Step,
    StepSla,
    WaitStep,
)

QUEUES_FILE = Path(__file__).with_name("queues.yaml")
_STEP: TypeAdapter[AnyStep] = TypeAdapter(Step)

# What a condition may read of the case (`case.<field>`); the workflow builds the same view.
CASE_FIELDS = frozenset(
    {
        "id",
        "type",
        "customer_id",
        "invoice_ids",
        "amount",
        "currency",
        "region",
        "reason_code",
        "vendor",
        "data",
    }
)
TASK_FIELDS = frozenset({"outcome", "data", "step"})


@dataclass(frozen=True)
class TemplateError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidTemplateError(ValueError):
    def __init__(self, errors: list[TemplateError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def parse_template(
    document: Mapping[str, Any], *, require_approval_rules: bool = False
) -> SopTemplate:
    """The template, or `InvalidTemplateError` listing every problem found.

    `require_approval_rules` for a new version (a draft, `casebook sop validate`): its
    money-moving billing steps must say who approves what, and every declared parameter
    must be read somewhere (a parameter nothing reads misleads its owner into thinking it
    steers the procedure). Versions published before these rules (the shipped v1s, cases'
    pinned templates) still parse without them."""
    try:
        template = SopTemplate.model_validate(document)
    except ValidationError as exc:
        errors = [*_schema_errors(exc), *_errors_of_parsable_steps(document)]
        raise InvalidTemplateError(errors) from None
    errors = list(_semantic_errors(template))
    errors += _money_errors(template, require_approval_rules)
    if require_approval_rules:
        errors += _unread_parameter_errors(template)
    if errors:
        raise InvalidTemplateError(errors)
    return template


def _schema_errors(exc: ValidationError) -> Iterator[TemplateError]:
    for err in exc.errors():
        yield TemplateError(_path(_without_step_tag(list(err["loc"]))), err["msg"])


def _without_step_tag(loc: list[Any]) -> list[Any]:
    """Discriminated unions add the step's kind ("email") after its index: drop it, so the
    path is the document's (`steps[3].template`)."""
    return [
        part
        for i, part in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "steps" and isinstance(loc[i - 1], int))
        or part not in STEP_KINDS
    ]


def schema_errors(exc: ValidationError) -> list[TemplateError]:
    """Pydantic's errors with their paths (`rules[0].levels[1].sla`), for other documents
    validated the same way (the escalation matrix)."""
    return list(_schema_errors(exc))


def _path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@lru_cache
def known_queue_patterns(path: Path = QUEUES_FILE) -> tuple[str, ...]:
    """The queue names and glob patterns the organisation runs (`queues.yaml`)."""
    document = yaml.safe_load(path.read_text())
    patterns = document.get("queues") if isinstance(document, dict) else None
    if not isinstance(patterns, list) or not all(isinstance(q, str) and q for q in patterns):
        raise ValueError(f"{path}: expected `queues:` with a list of queue names or patterns")
    return tuple(patterns)


def is_known_queue(queue: str) -> bool:
    return any(fnmatchcase(queue, pattern) for pattern in known_queue_patterns())


Roots = Mapping[str, frozenset[str] | None]


class _ParamNames(frozenset[str]):
    """The parameter names a condition may read, carrying their declared values (so a
    duration read from a parameter can be checked where it is declared)."""

    values: Mapping[str, Any]

    def __new__(cls, parameters: Mapping[str, Any]) -> _ParamNames:
        names = super().__new__(cls, parameters)
        names.values = dict(parameters)
        return names


def condition_roots(parameters: Any) -> Roots:
    """What a condition may read. `params` are the template's own, so a typo is caught here
    rather than as a missing value when a running case reaches the decision; when the
    parameters themselves are malformed (already a schema error) any name is let through."""
    params = _ParamNames(parameters) if isinstance(parameters, Mapping) else None
    return {"case": CASE_FIELDS, "task": TASK_FIELDS, "params": params}


def params_values(roots: Roots) -> Mapping[str, Any]:
    params = roots.get("params")
    return params.values if isinstance(params, _ParamNames) else {}


# ---------------------------------------------------------------- parameters nothing reads


def _unread_parameter_errors(t: SopTemplate) -> list[TemplateError]:
    read = parameters_read(t)
    if read is None:
        return []  # an email reads `params` whole
    return [
        TemplateError(
            f"parameters.{name}",
            f"parameter {name!r} is declared but nothing reads it: refer to it as "
            f"params.{name} in a step (a wait's after/grace, a condition, an argument) or "
            "an email, or remove it",
        )
        for name in t.parameters
        if name not in read
    ]


def parameters_read(t: SopTemplate) -> set[str] | None:
    """The parameters the template reads (None: all of them, an email reads `params` whole)."""
    read: set[str] = set()
    for source in _expression_sources(t):
        try:
            names = compile_expression(source).names
        except ExpressionError:
            continue  # reported as an error of its own
        read |= {n.split(".")[1] for n in names if n.startswith("params.")}
    for email in t.emails.values():
        for source in (email.subject, email.text, email.html):
            found = _jinja_params(source) if source else set()
            if found is None:
                return None
            read |= found
    return read


def _expression_sources(t: SopTemplate) -> Iterator[str]:
    for step in t.steps:
        yield from step.expressions()


_PARSER = EmailSandbox(autoescape=False)


def _jinja_params(source: str) -> set[str] | None:
    """`params.x` / `params["x"]` an email part reads; None when it reads `params` whole."""
    try:
        tree = _PARSER.parse(source)
    except TemplateSyntaxError:
        return set()  # reported by the email checks
    read: set[str] = set()
    by_field = 0
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        inner = node.node
        if isinstance(inner, nodes.Name) and inner.name == "params":
            by_field += 1
            if isinstance(node, nodes.Getattr):
                read.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                read.add(node.arg.value)
            else:
                return None
    whole = sum(1 for n in tree.find_all(nodes.Name) if n.name == "params")
    return None if whole > by_field else read


def _errors_of_parsable_steps(document: Any) -> Iterator[TemplateError]:
    """Step checks for every step that parses on its own, when the whole document does not:
    a typo in one step must not hide an unknown queue or a bad SLA in another."""
    raw_steps = document.get("steps") if isinstance(document, Mapping) else None
    if not isinstance(raw_steps, list):
        return
    known = {s["id"] for s in raw_steps if isinstance(s, Mapping) and isinstance(s.get("id"), str)}
    roots = condition_roots(document.get("parameters", {}))
    for i, raw in enumerate(raw_steps):
        try:
            step = _STEP.validate_python(raw)
        except ValidationError:
            continue  # its schema errors are reported already
        yield from _step_errors(f"steps[{i}]", step, known, roots)


def _semantic_errors(t: SopTemplate) -> Iterator[TemplateError]:
    ids = [s.id for s in t.steps]
    known = set(ids)
    seen: set[str] = set()
    for i, step_id in enumerate(ids):
        if step_id in seen:
            yield TemplateError(f"steps[{i}].id", f"duplicate step id {step_id!r}")
        if step_id == INTAKE_CHECK_STEP:
            yield TemplateError(f"steps[{i}].id", f"{step_id!r} is reserved for intake's check")
        seen.add(step_id)
    if t.start not in known:
        yield TemplateError("start", f"unknown step {t.start!r}")
    roots = condition_roots(t.parameters)
    for i, step in enumerate(t.steps):
        yield from _step_errors(f"steps[{i}]", step, known, roots, set(t.emails))
    for name, email in t.emails.items():
        yield from _email_errors(f"emails.{name}", email, t)
    if t.start in known:
        yield from _graph_errors(t)


@dataclass(frozen=True)
class _Scope:
    """What a step's checks read beside the step: the template's step ids, what conditions
    may read, and its email names (None: the document as a whole did not parse)."""

    known: set[str]
    roots: Roots
    emails: set[str] | None


def _step_errors(
    path: str,
    step: AnyStep,
    known: set[str],
    roots: Roots,
    emails: set[str] | None = None,
) -> Iterator[TemplateError]:
    yield from STEP_CHECKS[type(step)](path, step, _Scope(known, roots, emails))


def _next_errors(
    path: str, step: EmailStep | BillingStep | WaitStep | ComputeStep, scope: _Scope
) -> Iterator[TemplateError]:
    if step.next not in scope.known:
        yield TemplateError(f"{path}.next", f"unknown step {step.next!r}")


def _wait_step_errors(path: str, step: WaitStep, scope: _Scope) -> Iterator[TemplateError]:
    yield from _wait_errors(path, step, scope.roots)
    yield from _next_errors(path, step, scope)


def _email_step_errors(path: str, step: EmailStep, scope: _Scope) -> Iterator[TemplateError]:
    yield from _next_errors(path, step, scope)
    if step.error_queue is not None:
        yield from _queue_errors(f"{path}.error_queue", step.error_queue)
    emails = scope.emails
    if emails is not None and step.template not in emails:
        yield TemplateError(f"{path}.template", f"no email {step.template!r} in `emails`")
    for language, name in step.languages.items():
        if emails is not None and name not in emails:
            yield TemplateError(f"{path}.languages.{language}", f"no email {name!r} in `emails`")
    yield from _condition_errors(f"{path}.to", step.to, scope.roots)


def _compute_step_errors(path: str, step: ComputeStep, scope: _Scope) -> Iterator[TemplateError]:
    yield from _next_errors(path, step, scope)
    for name, source in step.set.items():
        yield from _condition_errors(f"{path}.set.{name}", source, scope.roots)


def _billing_step_errors(path: str, step: BillingStep, scope: _Scope) -> Iterator[TemplateError]:
    # Its approval rule is checked with the whole template (`_money_errors`).
    yield from _next_errors(path, step, scope)
    yield from _queue_errors(f"{path}.error_queue", step.error_queue)
    for arg, source in step.args.items():
        yield from _condition_errors(f"{path}.args.{arg}", source, scope.roots)


def _task_step_errors(path: str, step: HumanTaskStep, scope: _Scope) -> Iterator[TemplateError]:
    yield from _queue_errors(f"{path}.queue", step.queue)
    if step.sla is not None:
        yield from _sla_errors(f"{path}.sla", step.sla)
    for outcome, target in step.transitions.items():
        if outcome not in step.outcomes:
            yield TemplateError(
                f"{path}.transitions.{outcome}", f"outcome {outcome!r} is not declared"
            )
        if target not in scope.known:
            yield TemplateError(f"{path}.transitions.{outcome}", f"unknown step {target!r}")
    for outcome in step.outcomes:
        if outcome not in step.transitions:
            yield TemplateError(f"{path}.outcomes", f"outcome {outcome!r} has no transition")


def _decision_step_errors(path: str, step: DecisionStep, scope: _Scope) -> Iterator[TemplateError]:
    for j, branch in enumerate(step.branches):
        yield from _condition_errors(f"{path}.branches[{j}].when", branch.when, scope.roots)
        if branch.goto not in scope.known:
            yield TemplateError(f"{path}.branches[{j}].goto", f"unknown step {branch.goto!r}")
    if step.otherwise not in scope.known:
        yield TemplateError(f"{path}.otherwise", f"unknown step {step.otherwise!r}")


def _end_step_errors(path: str, step: EndStep, scope: _Scope) -> Iterator[TemplateError]:
    return iter(())


# Each step kind's own checks (the template-wide ones: `_semantic_errors`, `_money_errors`,
# `_graph_errors`), one entry per step model of the schema (`STEP_MODELS`).
STEP_CHECKS: dict[type[AnyStep], Callable[[str, Any, _Scope], Iterator[TemplateError]]] = {
    HumanTaskStep: _task_step_errors,
    DecisionStep: _decision_step_errors,
    ComputeStep: _compute_step_errors,
    EndStep: _end_step_errors,
    EmailStep: _email_step_errors,
    BillingStep: _billing_step_errors,
    WaitStep: _wait_step_errors,
}


def _money_errors(t: SopTemplate, required: bool) -> list[TemplateError]:
    errors: list[TemplateError] = []
    roots = condition_roots(t.parameters)
    for i, step in enumerate(t.steps):
        if not isinstance(step, BillingStep):
            continue
        path = f"steps[{i}].approval"
        if step.approval is not None:
            errors += _approval_errors(path, step, step.approval, t, roots)
        elif required and step.action in MONEY_ACTIONS:
            errors.append(
                TemplateError(
                    path,
                    f"{step.action} moves money: declare who approves it, e.g. "
                    "approval: {amount: amount, above: params.approval_threshold, "
                    "step: lead_approval}",
                )
            )
    return errors


def _approval_errors(
    path: str, step: BillingStep, rule: ApprovalRule, t: SopTemplate, roots: Roots
) -> list[TemplateError]:
    errors: list[TemplateError] = []
    if rule.amount not in step.args:
        errors.append(
            TemplateError(f"{path}.amount", f"{rule.amount!r} is not one of this step's args")
        )
    errors += _condition_errors(f"{path}.above", rule.above, roots)
    approver = next((s for s in t.steps if s.id == rule.step), None)
    if not (
        isinstance(approver, HumanTaskStep) and approver.approval and "approve" in approver.outcomes
    ):
        errors.append(
            TemplateError(
                f"{path}.step",
                f"{rule.step!r} must be a human_task step with approval: true "
                "and an outcome `approve`",
            )
        )
    return errors


def _wait_errors(path: str, step: WaitStep, roots: Roots) -> Iterator[TemplateError]:
    if (step.until is None) == (step.after is None):
        yield TemplateError(path, "a wait step needs exactly one of `until` or `after`")
    if step.until is not None:
        yield from _condition_errors(f"{path}.until", step.until, roots)
    for name in ("after", "grace"):
        text = getattr(step, name)
        if text is not None:
            yield from _duration_errors(f"{path}.{name}", text, roots)


def _duration_errors(path: str, text: str, roots: Roots) -> Iterator[TemplateError]:
    """A wait's duration: a literal such as 7d, or an expression (a parameter such as
    params.reminder_wait) whose value is one; a parameter's value is checked here."""
    try:
        parse_budget(text)
        return
    except InvalidBudgetError as exc:
        literal_error = str(exc)
    try:
        expr = compile_expression(text)
    except ExpressionError:
        yield TemplateError(path, f"{literal_error}; nor is it an expression such as params.wait")
        return
    problems = check_names(expr, roots)
    for message in problems:
        yield TemplateError(path, message)
    params = roots.get("params")
    if problems or params is None or expr.names != {text.strip()}:
        return
    root, _, name = text.strip().partition(".")
    if root == "params" and name in params:
        value = params_values(roots).get(name)
        try:
            parse_budget(str(value))
        except InvalidBudgetError as exc:
            yield TemplateError(f"parameters.{name}", f"read as a duration by {path}: {exc}")


def _email_errors(path: str, email: EmailTemplate, t: SopTemplate) -> Iterator[TemplateError]:
    """Each part must render against a sample case (a typo in a name fails here, not later),
    in the same sandbox and under the same caps as when the email is sent."""
    for part in ("subject", "text", "html"):
        source = getattr(email, part)
        if source is None:
            continue
        try:
            render(part, source, sample_context(t), html=part == "html")
        except RenderError as exc:
            yield TemplateError(f"{path}.{part}", exc.message)


class _FreeForm(dict):  # type: ignore[type-arg]
    """`case.data` and task data are free-form: any field renders, as a placeholder."""

    def __getitem__(self, key: Any) -> _FreeForm:
        return _FreeForm()

    def __getattr__(self, key: str) -> _FreeForm:
        return _FreeForm()

    def __str__(self) -> str:
        return "sample"


def sample_context(t: SopTemplate) -> dict[str, Any]:
    """What emails and conditions see, filled with plausible values."""
    case = {f: "" for f in CASE_FIELDS} | {
        "id": "DSP-SAMPLE",
        "amount": "1250.00",
        "currency": "USD",
        "invoice_ids": ["INV-1"],
        "data": _FreeForm(),
    }
    return {
        "case": case,
        "params": dict(t.parameters),
        "task": {"outcome": "", "data": _FreeForm()},
    }


def _queue_errors(path: str, queue: str) -> Iterator[TemplateError]:
    if not is_known_queue(queue):
        known = ", ".join(known_queue_patterns())
        yield TemplateError(path, f"unknown queue {queue!r} (queues.yaml runs: {known})")


def _sla_errors(path: str, sla: StepSla) -> Iterator[TemplateError]:
    try:
        parse_budget(sla.budget)
    except InvalidBudgetError as exc:
        yield TemplateError(f"{path}.budget", str(exc))
    if sla.calendar is not None:
        try:
            get_calendar(sla.calendar)
        except UnknownCalendarError as exc:
            yield TemplateError(f"{path}.calendar", str(exc))


def _condition_errors(path: str, source: str, roots: Roots) -> Iterator[TemplateError]:
    try:
        expr = compile_expression(source)
    except ExpressionError as exc:
        yield TemplateError(path, str(exc))
        return
    for message in check_names(expr, roots):
        yield TemplateError(path, message)


def _graph_errors(t: SopTemplate) -> Iterator[TemplateError]:
    by_id = {s.id: s for s in t.steps}
    reachable = _closure([t.start], lambda sid: by_id[sid].successors() if sid in by_id else [])
    predecessors: dict[str, list[str]] = {sid: [] for sid in by_id}
    for step in t.steps:
        for target in step.successors():
            if target in predecessors:
                predecessors[target].append(step.id)
    ends = [s.id for s in t.steps if isinstance(s, EndStep)]
    can_end = _closure(ends, lambda sid: predecessors.get(sid, []))
    if not ends:
        yield TemplateError("steps", "no step of kind 'end': a case could never close")
    for i, step in enumerate(t.steps):
        if step.id not in reachable:
            yield TemplateError(f"steps[{i}]", f"step {step.id!r} is unreachable from the start")
        elif ends and step.id not in can_end:
            yield TemplateError(f"steps[{i}]", f"step {step.id!r} has no way to an end step")


def _closure(roots: list[str], neighbours: Any) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(neighbours(node))
    return seen
