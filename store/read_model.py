"""The case/task read model: the idempotent projection that writes it, the queries that read it.

Two writers feed it (the API with the snapshot an Update returned, and the workflow's
projection activity); each write is an upsert guarded by revision, so whichever arrives
late or twice never replaces a newer state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, Table, false, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from access.policy import UNLIMITED, Reach
from domain.case_models import CaseSnapshot, TaskStatus
from domain.escalation_models import EscalationSnapshot
from store import facts
from store.tables import CaseRow, EscalationRow, FactRow, ReconciliationRow, TaskRow
from store.users import aware


def project_snapshot(engine: Engine, snapshot: CaseSnapshot) -> None:
    """Write `snapshot` unless the read model already holds this revision or a newer one.

    Its facts (store/facts.py) are written only when its case row wins, in the same
    transaction: the winning upsert holds the case row's lock, so two projections of one
    case never count the same history entry twice.
    """
    with engine.begin() as connection:
        won = _upsert_won(connection, CaseRow.__table__, _case_values(snapshot))
        for task in snapshot.tasks:
            values = _task_values(snapshot, task)
            connection.execute(
                _upsert(connection.dialect.name, TaskRow.__table__, tuple(values)), values
            )
        if won:
            _write_case_facts(connection, snapshot, replace=False)


def project_escalation(engine: Engine, snapshot: EscalationSnapshot) -> None:
    """The escalation board's row, by the same newest-revision-wins rule; its fact only
    when the row's write won (as a case's)."""
    with engine.begin() as connection:
        if _upsert_won(connection, EscalationRow.__table__, _escalation_values(snapshot)):
            _put_facts(
                connection, [facts.escalation_fact(snapshot, _case_row(connection, snapshot))]
            )


def _case_row(connection: Connection, snapshot: EscalationSnapshot) -> Any:
    """The escalation's case row (its fact takes the case's type, SOP and amounts)."""
    cases = CaseRow.__table__
    query = sa_select(cases).where(cases.c.id == snapshot.case_id)
    return connection.execute(query).mappings().first()


def _escalation_values(snapshot: EscalationSnapshot) -> dict[str, Any]:
    values = snapshot.model_dump(
        include={
            "id",
            "case_id",
            "task_id",
            "step",
            "kind",
            "reason",
            "level_name",
            "queue",
            "status",
            "owner",
            "vendor",
            "region",
            "opened_at",
            "due_at",
            "resolved_at",
            "revision",
            "level",
        },
        mode="python",
    )
    values["kind"], values["status"] = snapshot.kind.value, snapshot.status.value
    values["snapshot"] = snapshot.model_dump(mode="json")
    return values


def _upsert_won(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Upsert one row by the newest-revision-wins rule; whether this write won."""
    stmt = _upsert(connection.dialect.name, table, tuple(values)).returning(table.c.id)
    return connection.execute(stmt, values).first() is not None


def _write_case_facts(connection: Connection, snapshot: CaseSnapshot, *, replace: bool) -> None:
    table = FactRow.__table__
    mine = (table.c.case_id == snapshot.id) & table.c.kind.in_([facts.CASE, facts.TASK])
    previous: dict[str, facts.Fact] = {}
    if replace:
        connection.execute(table.delete().where(mine))
    else:
        previous = facts.by_id(connection.execute(sa_select(table).where(mine)).mappings())
    _put_facts(connection, facts.case_facts(snapshot, previous))


def _put_facts(connection: Connection, rows: list[facts.Fact]) -> None:
    """Each fact by its key: written again, it replaces itself, never adds a row."""
    table = FactRow.__table__
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    for values in rows:
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"], set_={k: stmt.excluded[k] for k in values if k != "id"}
        )
        connection.execute(stmt, values)


@cache
def _upsert(dialect: str, table: Table, columns: tuple[str, ...]) -> Any:
    """The upsert of `columns` into `table`, built once: the values are bound at execution."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={k: stmt.excluded[k] for k in columns if k != "id"},
        where=table.c.revision < stmt.excluded.revision,
    )


def _case_values(s: CaseSnapshot) -> dict[str, Any]:
    return {
        "id": s.id,
        "type": s.type,
        "status": s.status.value,
        "customer_id": s.customer_id,
        "vendor": s.vendor,
        "amount": str(s.amount),
        "currency": s.currency,
        "region": s.region,
        "reason_code": s.reason_code,
        "sop_name": s.sop.name,
        "sop_version": s.sop.version,
        "current_step": s.current_step,
        "resolution": s.resolution,
        "opened_by": s.opened_by,
        "opened_at": s.opened_at,
        "closed_at": s.closed_at,
        "revision": s.revision,
        "snapshot": s.model_dump(mode="json", exclude={"history"}),
    }


def _task_values(s: CaseSnapshot, t: Any) -> dict[str, Any]:
    return {
        "id": t.id,
        "case_id": s.id,
        "case_type": s.type,
        "step": t.step,
        "title": t.title,
        "queue": t.queue,
        "status": t.status.value,
        "assignee": t.assignee,
        "priority": t.priority,
        "allowed_outcomes": t.allowed_outcomes,
        "vendor": t.vendor,
        "created_at": t.created_at,
        "claimed_at": t.claimed_at,
        "completed_at": t.completed_at,
        "outcome": t.outcome,
        "revision": s.revision,
        "sla_due": t.sla_due,
        "sla_warning_at": t.sla_warning_at,
        "sla_paused": t.sla_paused,
        "sla_state": t.sla_state.value if t.sla_state else None,
    }


def _where_equal(query: Any, *filters: tuple[Any, object]) -> Any:
    """Add `column == value` for every filter whose value was given."""
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
    return query


def _within(query: Any, table: Any, reach: Reach) -> Any:
    """Only the rows the policy's `reach` admits (vendor, vendor-less, opener, queues)."""
    if reach.nothing:
        return query.where(false())
    if not reach.all_vendors:
        vendor = col(table.vendor)
        mine = vendor == reach.vendor if reach.vendor is not None else false()
        query = query.where(or_(mine, vendor.is_(None)) if reach.vendorless else mine)
    if reach.opened_by is not None:
        query = query.where(col(table.opened_by) == reach.opened_by)
    if reach.queues is not None:
        query = query.where(col(table.queue).in_(list(reach.queues)))
    return query


@dataclass(frozen=True)
class CaseFilter:
    type: str | None = None
    status: str | None = None
    customer_id: str | None = None
    reach: Reach = UNLIMITED  # what the caller may see (access/policy.py)
    limit: int = 50
    offset: int = 0


def list_cases(session: Session, f: CaseFilter) -> Sequence[CaseRow]:
    """Cases matching the filter, newest first."""
    query = _where_equal(
        select(CaseRow),
        (CaseRow.type, f.type),
        (CaseRow.status, f.status),
        (CaseRow.customer_id, f.customer_id),
    )
    query = _within(query, CaseRow, f.reach)
    query = query.order_by(col(CaseRow.opened_at).desc(), col(CaseRow.id))
    return session.exec(query.offset(f.offset).limit(f.limit)).all()


def get_case(session: Session, case_id: str) -> CaseRow | None:
    return session.get(CaseRow, case_id)


@dataclass(frozen=True)
class TaskFilter:
    queues: Sequence[str] | None = None
    status: str | None = None
    assignee: str | None = None
    reach: Reach = UNLIMITED  # what the caller may see (access/policy.py)
    case_id: str | None = None
    limit: int = 50
    offset: int = 0


def list_tasks(session: Session, f: TaskFilter) -> Sequence[TaskRow]:
    """The inbox: most urgent first (highest priority, then oldest)."""
    query = select(TaskRow)
    if f.queues is not None:
        query = query.where(col(TaskRow.queue).in_(list(f.queues)))
    if f.status is not None:
        query = query.where(TaskRow.status == f.status)
    if f.assignee is not None:
        query = query.where(TaskRow.assignee == f.assignee)
    if f.case_id is not None:
        query = query.where(TaskRow.case_id == f.case_id)
    query = _within(query, TaskRow, f.reach)
    # Most urgent first: priority, then the nearest SLA deadline (none last), then age.
    query = query.order_by(
        col(TaskRow.priority).desc(),
        col(TaskRow.sla_due).is_(None),
        col(TaskRow.sla_due),
        col(TaskRow.created_at),
        col(TaskRow.id),
    )
    return session.exec(query.offset(f.offset).limit(f.limit)).all()


def get_task(session: Session, task_id: str) -> TaskRow | None:
    return session.get(TaskRow, task_id)


def open_tasks_in_queue(
    session: Session, queue: str, reach: Reach, limit: int
) -> Sequence[TaskRow]:
    """Claim-next candidates, most urgent first."""
    f = TaskFilter(queues=[queue], status=TaskStatus.OPEN.value, reach=reach, limit=limit)
    return list_tasks(session, f)


def replace_case(engine: Engine, snapshot: CaseSnapshot) -> None:
    """Make the read model show exactly `snapshot`, whatever revision it held.

    For a rebuild from the source of truth: a row written from a state Temporal never
    persisted may carry a higher revision than the true one, and must still give way.
    """
    tasks, cases = TaskRow.__table__, CaseRow.__table__
    with engine.begin() as connection:
        connection.execute(tasks.delete().where(tasks.c.case_id == snapshot.id))
        connection.execute(cases.delete().where(cases.c.id == snapshot.id))
        _insert_case(connection, snapshot)


def _insert_case(connection: Connection, snapshot: CaseSnapshot) -> None:
    """The case's rows and its facts recounted from its whole history (a replacement)."""
    connection.execute(CaseRow.__table__.insert(), _case_values(snapshot))
    for task in snapshot.tasks:
        connection.execute(TaskRow.__table__.insert(), _task_values(snapshot, task))
    _write_case_facts(connection, snapshot, replace=True)


# What the read model may hold that Temporal's answer does not: the history travels apart
# (each projection carries only its new entries), so neither it nor its offset is compared.
_NOT_COMPARED = ("history", "history_offset")


@dataclass(frozen=True)
class StoredCase:
    """A case's rows in the read model, in the shape `_case_values`/`_task_values` give."""

    revision: int
    case: dict[str, Any]
    tasks: dict[str, dict[str, Any]]


def stored_case(engine: Engine, case_id: str) -> StoredCase | None:
    """The case's row and its tasks' rows as they stand, or None when it has no row."""
    cases, tasks = CaseRow.__table__, TaskRow.__table__
    with engine.connect() as connection:
        row = connection.execute(cases.select().where(cases.c.id == case_id)).mappings().first()
        if row is None:
            return None
        task_rows = connection.execute(tasks.select().where(tasks.c.case_id == case_id))
        by_id = {t["id"]: dict(t) for t in task_rows.mappings()}
    return StoredCase(revision=row["revision"], case=dict(row), tasks=by_id)


def case_differences(stored: StoredCase | None, snapshot: CaseSnapshot) -> list[str]:
    """What the read model shows differently from `snapshot` (empty: they agree)."""
    if stored is None:
        return ["case: no row in the read model"]
    found = _fields_differing("case", stored.case, _case_values(snapshot))
    expected = {t.id: _task_values(snapshot, t) for t in snapshot.tasks}
    for task_id in sorted(expected.keys() | stored.tasks.keys()):
        if task_id not in stored.tasks:
            found.append(f"task {task_id}: no row in the read model")
        elif task_id not in expected:
            found.append(f"task {task_id}: in the read model, not in Temporal")
        else:
            found += _fields_differing(f"task {task_id}", stored.tasks[task_id], expected[task_id])
    return found


def _fields_differing(what: str, stored: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    found = []
    for name, want in expected.items():
        have = stored.get(name)
        if name == "snapshot":
            want, have = _comparable_snapshot(want), _comparable_snapshot(have)
        if _plain(have) != _plain(want):
            found.append(f"{what}.{name}: read model {_short(have)}, Temporal {_short(want)}")
    return found


def _comparable_snapshot(snapshot: Any) -> Any:
    if not isinstance(snapshot, dict):
        return snapshot
    return {k: v for k, v in snapshot.items() if k not in _NOT_COMPARED}


def _plain(value: Any) -> Any:
    """Equal values compare equal whichever database handed them back (naive UTC datetimes)."""
    if isinstance(value, datetime):
        return aware(value).isoformat()
    return value


def _short(value: Any) -> str:
    text = "snapshot" if isinstance(value, dict) else repr(_plain(value))
    return text if len(text) <= 60 else text[:57] + "..."


def stored_escalation(engine: Engine, escalation_id: str) -> dict[str, Any] | None:
    """The escalation's board row as it stands, or None when it has none."""
    table = EscalationRow.__table__
    with engine.connect() as connection:
        query = table.select().where(table.c.id == escalation_id)
        row = connection.execute(query).mappings().first()
    return None if row is None else dict(row)


def escalation_differences(
    stored: dict[str, Any] | None, snapshot: EscalationSnapshot
) -> list[str]:
    """What the board shows differently from the escalation's own state (empty: agree)."""
    if stored is None:
        return ["escalation: no row on the board"]
    return _fields_differing("escalation", stored, _escalation_values(snapshot))


def replace_escalation_if(
    engine: Engine,
    snapshot: EscalationSnapshot,
    expected_revision: int | None,
    record: SQLModel | None = None,
) -> bool:
    """The board's row made exactly `snapshot`, only over the row that was compared
    (`expected_revision`; None: no row), as `replace_case_if` does for a case."""
    table = EscalationRow.__table__
    with engine.begin() as connection:
        if not _take_row(connection, table, snapshot.id, expected_revision):
            return False
        connection.execute(table.insert(), _escalation_values(snapshot))
        _put_facts(connection, [facts.escalation_fact(snapshot, _case_row(connection, snapshot))])
        _insert_record(connection, record)
    return True


def _take_row(connection: Connection, table: Table, row_id: str, revision: int | None) -> bool:
    """Delete the row if it still holds `revision` (None: check there is no row)."""
    if revision is None:
        taken = connection.execute(select(func.count()).where(table.c.id == row_id))
        return not taken.scalar_one()
    gone = connection.execute(
        table.delete().where(table.c.id == row_id, table.c.revision == revision)
    )
    return gone.rowcount == 1


def _insert_record(connection: Connection, record: SQLModel | None) -> None:
    if record is not None:
        connection.execute(type(record).__table__.insert(), record.model_dump(exclude_none=True))


def replace_case_if(
    engine: Engine,
    snapshot: CaseSnapshot,
    expected_revision: int | None,
    record: SQLModel | None = None,
) -> bool:
    """`replace_case`, only if the case's row still holds `expected_revision` (None: no row).

    The reconciler compared that row with Temporal; a projection that landed meanwhile wins
    (False, nothing changed), so a repair never overwrites a state newer than what it saw.
    `record` (a row to insert, such as the repair's record) commits with the repair.
    """
    tasks, cases = TaskRow.__table__, CaseRow.__table__
    with engine.begin() as connection:
        if not _take_row(connection, cases, snapshot.id, expected_revision):
            return False
        connection.execute(tasks.delete().where(tasks.c.case_id == snapshot.id))
        _insert_case(connection, snapshot)
        _insert_record(connection, record)
    return True


@dataclass(frozen=True)
class EscalationFilter:
    status: str | None = None
    queue: str | None = None
    case_id: str | None = None
    reach: Reach = UNLIMITED  # what the caller may see (access/policy.py)
    limit: int = 50
    offset: int = 0


def list_escalations(session: Session, f: EscalationFilter) -> Sequence[EscalationRow]:
    """The lead board: unresolved first, then the most overdue (earliest due) first."""
    query = _where_equal(
        select(EscalationRow),
        (EscalationRow.status, f.status),
        (EscalationRow.queue, f.queue),
        (EscalationRow.case_id, f.case_id),
    )
    query = _within(query, EscalationRow, f.reach)
    query = query.order_by(
        col(EscalationRow.status) == "resolved",
        col(EscalationRow.due_at).is_(None),
        col(EscalationRow.due_at),
        col(EscalationRow.opened_at),
    )
    return session.exec(query.offset(f.offset).limit(f.limit)).all()


def count_stalled(engine: Engine) -> int:
    """Open cases whose SOP failed at run time and that wait on a person (`stalled`)."""
    stalled = CaseRow.__table__.c.snapshot["stalled"].as_string()
    query = (
        select(func.count())
        .select_from(CaseRow)
        .where(CaseRow.status == "open", stalled.is_not(None))
    )
    with Session(engine) as session:
        return int(session.exec(query).one())


def cases_to_reconcile(engine: Engine, closed_since: datetime) -> list[str]:
    """Ids of the read model's open cases and of those closed since `closed_since`."""
    cases = CaseRow.__table__
    query = select(cases.c.id).where(
        or_(
            cases.c.status != "closed",
            cases.c.closed_at.is_(None),
            cases.c.closed_at >= closed_since,
        )
    )
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(query.order_by(cases.c.id))]


def count_repairs(engine: Engine) -> int:
    """Repairs the reconciler made, by any process (each is a `reconciliations` row)."""
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(ReconciliationRow)).one())


def escalations_to_reconcile(engine: Engine, resolved_since: datetime) -> list[str]:
    """Ids of the board's unresolved escalations and of those resolved since then."""
    table = EscalationRow.__table__
    recent = or_(table.c.resolved_at.is_(None), table.c.resolved_at >= resolved_since)
    query = select(table.c.id).where(or_(table.c.status != "resolved", recent))
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(query.order_by(table.c.id))]
