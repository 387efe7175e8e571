"""The one authorization policy: which role may do which action, over which scope.

Every route declares its action (`api.deps.authorize`); services ask `reach` for what a
listing may return and `refuse_case` / `refuse_task` / `refuse_escalation` about one
resource; the case workflow's Update validators ask `refuse_task` too. Pure code (no I/O):
the workflow sandbox imports it.

Two steps decide about one resource, so a caller cannot probe for what it may not see:
a role without the action gets 403; a resource outside what the role may *read* is 404
(its existence is not revealed); a readable resource outside the action's scope is 403.

`python -m access.policy` prints the table as docs/SECURITY.md shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from domain.case_models import Actor, Role


class Action(StrEnum):
    OPEN_CASE = "open case"
    READ_CASE = "read case"
    LIST_CASES = "list cases"
    INBOX = "inbox"
    CLAIM = "claim"
    WORK_TASK = "work own task"  # release, complete, pause, resume
    ESCALATE = "escalate"
    BOARD_READ = "board read"
    BOARD_ACT = "board act"  # acknowledge, resolve
    APPROVE = "approve"  # approve or reject on the board
    REASSIGN = "reassign"
    SOP_READ = "SOP read"
    SOP_AUTHOR = "SOP author"
    SOP_PUBLISH = "SOP publish"  # publish, retire
    MIGRATE = "migrate"
    MATRIX_READ = "escalation matrix read"
    # Draft, publish and retire versions of the escalation matrix: who receives late work
    # is part of the procedure, so the people who own procedures change it.
    MATRIX_AUTHOR = "escalation matrix author"
    AUDIT_READ = "audit read"  # timeline, state as of
    AUDIT_REPLAY = "audit replay"
    AUDIT_EXPORT = "audit export"  # CLI
    SWEEP = "sweeps"
    METRICS = "metrics"
    REPORTS = "reports"  # KPIs over the facts (GET /reports/...)
    USER_ADMIN = "user admin"  # CLI, on the host with the database


class Scope(StrEnum):
    QUEUE_VENDOR = "own queues and vendor"
    VENDOR = "own vendor"
    OWN = "own"
    ANY = "any"


_Q, _V, _O, _A = Scope.QUEUE_VENDOR, Scope.VENDOR, Scope.OWN, Scope.ANY

# Least privilege per role (docs/SECURITY.md); an action missing from a row is forbidden.
TABLE: dict[Role, dict[Action, Scope]] = {
    Role.AGENT: {
        Action.OPEN_CASE: _V,
        Action.READ_CASE: _V,
        Action.LIST_CASES: _V,
        Action.INBOX: _Q,
        Action.CLAIM: _Q,
        Action.WORK_TASK: _O,
        Action.ESCALATE: _Q,
    },
    Role.LEAD: {
        Action.OPEN_CASE: _V,
        Action.READ_CASE: _V,
        Action.LIST_CASES: _V,
        Action.INBOX: _V,
        Action.CLAIM: _V,
        Action.WORK_TASK: _O,
        Action.ESCALATE: _V,
        Action.BOARD_READ: _V,
        Action.BOARD_ACT: _V,
        Action.APPROVE: _V,
        Action.REASSIGN: _V,
        Action.SOP_READ: _A,
        Action.MATRIX_READ: _A,
        Action.AUDIT_READ: _V,
        Action.SWEEP: _V,
        Action.METRICS: _A,
        Action.REPORTS: _V,
    },
    Role.SOP_OWNER: {
        Action.SOP_READ: _A,
        Action.SOP_AUTHOR: _A,
        Action.SOP_PUBLISH: _A,
        Action.MIGRATE: _A,
        Action.MATRIX_READ: _A,
        Action.MATRIX_AUTHOR: _A,
    },
    Role.AUDITOR: {
        Action.READ_CASE: _A,
        Action.LIST_CASES: _A,
        Action.BOARD_READ: _A,
        Action.SOP_READ: _A,
        Action.MATRIX_READ: _A,
        Action.AUDIT_READ: _A,
        Action.AUDIT_REPLAY: _A,
        Action.AUDIT_EXPORT: _A,
        Action.METRICS: _A,
        Action.REPORTS: _A,
    },
    # Everything, anywhere; a task's commands still only by its holder (the case checks).
    Role.ADMIN: {action: _O if action == Action.WORK_TASK else _A for action in Action},
    Role.SYSTEM: {
        Action.OPEN_CASE: _A,
        Action.READ_CASE: _O,
        Action.LIST_CASES: _O,
        Action.SWEEP: _A,
        Action.METRICS: _A,
    },
}


def scope_of(role: Role, action: Action) -> Scope | None:
    """The scope `role` has for `action`; None when the role may not do it at all."""
    return TABLE[role].get(action)


def roles_allowed(action: Action) -> list[Role]:
    return [role for role in Role if action in TABLE[role]]


@dataclass(frozen=True)
class Refusal:
    """Why not: `forbidden` (403), `not_found` (404: do not reveal it) or `conflict` (409)."""

    kind: Literal["forbidden", "not_found", "conflict"]
    message: str
    details: dict[str, object] = field(default_factory=dict)


def refuse_role(actor: Actor, action: Action) -> Refusal | None:
    if scope_of(actor.role, action) is not None:
        return None
    allowed = ", ".join(r.value for r in roles_allowed(action))
    return Refusal("forbidden", f"role {actor.role.value} may not {action}; allowed: {allowed}")


def reaches_vendor(actor: Actor, vendor: str | None) -> bool:
    """Whether `actor`'s vendor scope covers work of `vendor` (None: a vendor-less case).

    Fails closed: an agent without a vendor reaches nothing unless made cross-vendor. A
    user bound to a vendor reaches vendor-less cases only when the actor was admitted with
    `shared_vendorless` (CASEBOOK_VENDORLESS_CASES=shared)."""
    if actor.cross_vendor:
        return True
    if actor.vendor is None:
        return actor.role != Role.AGENT
    if vendor is None:
        return actor.shared_vendorless
    return vendor == actor.vendor


class CaseLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def vendor(self) -> str | None: ...
    @property
    def opened_by(self) -> str: ...


class TaskLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def vendor(self) -> str | None: ...
    @property
    def queue(self) -> str: ...
    @property
    def assignee(self) -> str | None: ...


def _sees(actor: Actor, vendor: str | None, opened_by: str | None) -> bool:
    """Whether the actor may read a case of `vendor` opened by `opened_by`."""
    scope = scope_of(actor.role, Action.READ_CASE)
    if scope == Scope.ANY:
        return True
    if scope == Scope.OWN:
        return opened_by is not None and opened_by == actor.name
    return scope is not None and reaches_vendor(actor, vendor)


def refuse_case(actor: Actor, action: Action, case: CaseLike) -> Refusal | None:
    """Why `actor` may not do `action` on `case`, or None."""
    refusal = refuse_role(actor, action)
    if refusal or scope_of(actor.role, action) == Scope.ANY:
        return refusal
    if not _sees(actor, case.vendor, case.opened_by):
        return Refusal("not_found", f"case {case.id} not found")
    scope = scope_of(actor.role, action)
    if scope == Scope.OWN and case.opened_by != actor.name:
        return Refusal("forbidden", f"{actor.name} did not open case {case.id}")
    return None


def refuse_task(actor: Actor, action: Action, task: TaskLike) -> Refusal | None:
    """Why `actor` may not do `action` on `task` (role, vendor, queue, holder), or None."""
    refusal = refuse_role(actor, action)
    scope = scope_of(actor.role, action)
    if refusal or scope == Scope.ANY:
        return refusal
    if not _sees(actor, task.vendor, None):
        return Refusal("not_found", f"task {task.id} not found")
    if scope == Scope.QUEUE_VENDOR and task.queue not in actor.queues:
        return Refusal("forbidden", f"{actor.name} does not serve queue {task.queue}")
    if scope == Scope.OWN and task.assignee != actor.name:
        return not_holder(task)
    return None


def not_holder(task: TaskLike) -> Refusal:
    holder = f"claimed by {task.assignee}" if task.assignee else "not claimed"
    return Refusal(
        "conflict",
        f"task {task.id} is {holder}; only its assignee may do that",
        {"assignee": task.assignee},
    )


def refuse_escalation(
    actor: Actor, action: Action, escalation_id: str, vendor: str | None
) -> Refusal | None:
    """Escalations belong to their case's vendor: the board is scoped like the cases."""
    refusal = refuse_role(actor, action)
    if refusal or scope_of(actor.role, action) == Scope.ANY:
        return refusal
    if not reaches_vendor(actor, vendor):
        return Refusal("not_found", f"escalation {escalation_id} not found")
    return None


@dataclass(frozen=True)
class Reach:
    """What a listing may return for an action: the read model filters by it."""

    nothing: bool = False
    all_vendors: bool = True
    vendor: str | None = None  # when not all_vendors
    vendorless: bool = False  # when not all_vendors: also the cases with no vendor
    opened_by: str | None = None  # only the cases this user opened
    queues: tuple[str, ...] | None = None  # only these queues' tasks


# Internal queries (a sweep's duplicate check, a rebuild) see everything; every API listing
# sets the caller's reach instead.
UNLIMITED = Reach()


def reach(actor: Actor, action: Action) -> Reach:
    """The listing filter for `action` (an actor whose role lacks it reaches nothing)."""
    scope = scope_of(actor.role, action)
    if scope is None:
        return Reach(nothing=True)
    if scope == Scope.ANY:
        return UNLIMITED
    if scope == Scope.OWN:
        return Reach(opened_by=actor.name)
    queues = tuple(actor.queues) if scope == Scope.QUEUE_VENDOR else None
    if actor.cross_vendor or (actor.vendor is None and actor.role != Role.AGENT):
        return Reach(queues=queues)
    if actor.vendor is None:
        return Reach(nothing=True)
    return Reach(
        all_vendors=False,
        vendor=actor.vendor,
        vendorless=actor.shared_vendorless,
        queues=queues,
    )


def render_markdown() -> str:
    """The table as docs/SECURITY.md shows it (a test keeps the two equal)."""
    roles = list(Role)
    lines = [
        "| action | " + " | ".join(r.value for r in roles) + " |",
        "| --- | " + " | ".join("---" for _ in roles) + " |",
    ]
    for action in Action:
        cells = [scope_of(role, action) for role in roles]
        lines.append(f"| {action} | " + " | ".join(c.value if c else "—" for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
