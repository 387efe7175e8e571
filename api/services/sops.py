"""SOP template versions behind /sops: the registry's lifecycle, its refusals as API errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from api.deps import Services
from api.errors import ApiError
from api.services import tasks
from domain.case_models import Actor, HypercareTerms, MigrateSop, SopRef
from sop_templates import registry
from sop_templates.diff import Change
from sop_templates.schema import SopTemplate
from sop_templates.validation import InvalidTemplateError
from store.db import session_scope
from store.tables import CaseRow, SopVersionRow
from workflows import client as temporal
from workflows.case_logic import migration_blocker


@contextmanager
def _registry(svc: Services) -> Iterator[Session]:
    """One transaction; what the registry refuses is rolled back and becomes an ApiError."""
    try:
        with session_scope(svc.engine) as session:
            yield session
    except InvalidTemplateError as exc:
        raise invalid_document(exc) from None
    except registry.SopConflictError as exc:
        raise ApiError("conflict", str(exc)) from None
    except registry.UnknownSopError as exc:
        raise ApiError("not_found", str(exc)) from None
    except registry.HypercareOwnerError as exc:
        raise ApiError("invalid", str(exc), {"field": "hypercare"}) from None


def invalid_document(exc: InvalidTemplateError, what: str = "the template") -> ApiError:
    """422 with every error and its path (an SOP template, the escalation matrix)."""
    count = len(exc.errors)
    return ApiError(
        "invalid",
        f"{what} has {count} error{'' if count == 1 else 's'}: {exc}",
        {"errors": [{"path": e.path, "message": e.message} for e in exc.errors]},
    )


def list_sops(svc: Services) -> list[registry.SopSummary]:
    with _registry(svc) as session:
        return registry.list_sops(session)


def list_versions(svc: Services, name: str) -> Sequence[SopVersionRow]:
    with _registry(svc) as session:
        return registry.list_versions(session, name)


def get_version(svc: Services, name: str, version: int) -> SopVersionRow:
    with _registry(svc) as session:
        return registry.get_version(session, name, version)


def create_draft(
    svc: Services, actor: Actor, name: str, document: dict[str, Any]
) -> tuple[SopVersionRow, bool]:
    """The stored draft and whether it is new (False: it replaced a draft of that version)."""
    with _registry(svc) as session:
        return registry.create_draft(session, document, actor=actor.name, name=name)


def publish(
    svc: Services,
    actor: Actor,
    name: str,
    version: int,
    hypercare: HypercareTerms | None = None,
) -> SopVersionRow:
    with _registry(svc) as session:
        return registry.publish(session, name, version, actor=actor.name, hypercare=hypercare)


def retire(svc: Services, name: str, version: int) -> SopVersionRow:
    with _registry(svc) as session:
        return registry.retire(session, name, version)


def diff(svc: Services, name: str, before: int, after: int) -> list[Change]:
    with _registry(svc) as session:
        return registry.diff_versions(session, name, before, after)


def cases_on_version(svc: Services, name: str, version: int) -> Sequence[CaseRow]:
    with _registry(svc) as session:
        return registry.cases_on_version(session, name, version)


@dataclass
class MigrationReport:
    to_version: int
    dry_run: bool
    movable: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    blocked: list[dict[str, str]] = field(default_factory=list)


async def migrate_cases(
    svc: Services,
    actor: Actor,
    name: str,
    version: int,
    dry_run: bool,
    case_ids: list[str] | None,
) -> MigrationReport:
    """Which open cases on older versions can move to `version`, and why not the others;
    unless a dry run, move the movable ones (each records the move, with who asked)."""
    row, candidates = await run_in_threadpool(_migration_inputs, svc, name, version, case_ids)
    if row.status != "published":
        raise ApiError(
            "conflict", f"{name} v{version} is {row.status}: migrate only to a published version"
        )
    template = registry.template_of(row)
    sop = SopRef(name=row.name, version=row.version, content_hash=row.content_hash)
    report = MigrationReport(to_version=version, dry_run=dry_run)
    for case_id in candidates:
        case = await temporal.get_case(svc.temporal, case_id)  # the truth, not the read model
        current = await run_in_threadpool(_template, svc, case.sop.name, case.sop.version)
        reason = migration_blocker(case, template, current)
        if reason:
            report.blocked.append({"case_id": case_id, "reason": reason})
            continue
        report.movable.append(case_id)
        if not dry_run:
            cmd = MigrateSop(actor=actor, sop=sop, template=template)
            result = await temporal.migrate_case(svc.temporal, case_id, cmd, tasks.timeout(svc))
            await tasks.catch_up(svc, result)
            report.moved.append(case_id)
    return report


def _template(svc: Services, name: str, version: int) -> SopTemplate:
    with Session(svc.engine) as session:
        return registry.template_of(registry.get_version(session, name, version))


def _migration_inputs(
    svc: Services, name: str, version: int, case_ids: list[str] | None
) -> tuple[SopVersionRow, list[str]]:
    with _registry(svc) as session:
        row = registry.get_version(session, name, version)
        open_older = [
            c.id
            for c in session.exec(
                select(CaseRow).where(
                    CaseRow.sop_name == name,
                    CaseRow.status == "open",
                    CaseRow.sop_version < version,
                )
            ).all()
        ]
    return row, [c for c in open_older if case_ids is None or c in case_ids]
