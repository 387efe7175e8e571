"""Versions of the escalation matrix in the database: draft -> published -> retired.

The same lifecycle as SOP templates (`sop_templates/registry.py`): a draft is validated
when stored; publishing makes it immutable, and new cases pin the highest published
version (their routes are resolved from it at intake and travel in the case input);
retiring stops new cases from pinning it (the previous published version takes over).
Numbers are given by the registry and only grow; a draft is published only above every
version already released, so the newest published version is always the current one.
The shipped `matrix.yaml` is version 1, published by `casebook` on first start, or on
demand the first time intake needs a matrix and finds none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from escalations.matrix import EscalationMatrix, shipped_document
from escalations.sla_clock import InvalidBudgetError, parse_budget
from sop_templates.diff import Change, diff_documents
from sop_templates.registry import DRAFT, PUBLISHED, RETIRED, content_hash
from sop_templates.validation import (
    InvalidTemplateError,
    TemplateError,
    is_known_queue,
    known_queue_patterns,
    schema_errors,
)
from store.tables import EscalationMatrixVersionRow as MatrixRow

SEED_ACTOR = "casebook"


class UnknownMatrixVersionError(LookupError):
    def __str__(self) -> str:
        return str(self.args[0])


class MatrixConflictError(ValueError):
    """The change contradicts what the registry holds (a version's status, the numbering)."""


# --- validation (pure) ------------------------------------------------------------------


def parse_matrix(document: Mapping[str, Any]) -> EscalationMatrix:
    """The matrix, or `InvalidTemplateError` with every problem at its path."""
    try:
        matrix = EscalationMatrix.model_validate(document)
    except ValidationError as exc:
        # The levels that did parse are checked too: every error in one report.
        errors = [*schema_errors(exc), *_level_errors(document.get("rules"))]
        raise InvalidTemplateError(sorted(set(errors), key=errors.index)) from None
    errors = [*_level_errors(matrix.model_dump()["rules"]), *_coverage_errors(matrix)]
    if errors:
        raise InvalidTemplateError(errors)
    return matrix


def _level_errors(rules: Any) -> Iterator[TemplateError]:
    """Names, queues and SLAs of every level shaped like one (raw or parsed)."""
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        levels = rule.get("levels") if isinstance(rule, dict) else None
        seen: set[str] = set()
        for j, level in enumerate(levels if isinstance(levels, list) else []):
            if isinstance(level, dict):
                yield from _one_level_errors(f"rules[{i}].levels[{j}]", level, seen)


def _one_level_errors(path: str, level: dict[str, Any], seen: set[str]) -> Iterator[TemplateError]:
    name, queue, sla = level.get("name"), level.get("queue"), level.get("sla")
    if isinstance(name, str):
        if name in seen:
            yield TemplateError(f"{path}.name", f"level {name!r} appears twice")
        seen.add(name)
    if isinstance(queue, str) and not is_known_queue(queue):
        known = ", ".join(known_queue_patterns())
        yield TemplateError(f"{path}.queue", f"unknown queue {queue!r} (queues.yaml runs: {known})")
    if isinstance(sla, str):
        try:
            parse_budget(sla)
        except InvalidBudgetError as exc:
            yield TemplateError(f"{path}.sla", str(exc))


def _catches_all(matrix: EscalationMatrix, i: int) -> bool:
    match = matrix.rules[i].match
    return match.queue == match.region == match.vendor == "*"


def _coverage_errors(matrix: EscalationMatrix) -> Iterator[TemplateError]:
    """Every case must find a route, and every rule must be reachable."""
    last = len(matrix.rules) - 1
    first_catch_all = next((i for i in range(last + 1) if _catches_all(matrix, i)), None)
    if first_catch_all is None:
        yield TemplateError(
            f"rules[{last}].match",
            "the last rule must match any queue, region and vendor (`match: {}`), "
            "so every case finds a route",
        )
        return
    for i in range(first_catch_all + 1, last + 1):
        yield TemplateError(
            f"rules[{i}]", f"never used: rules[{first_catch_all}] already matches everything"
        )


# --- the registry -------------------------------------------------------------------------


def seed_shipped_matrix(session: Session, *, actor: str = SEED_ACTOR) -> MatrixRow | None:
    """Publish the shipped matrix as version 1 if the registry holds no version (idempotent)."""
    if session.exec(select(MatrixRow.version)).first() is not None:
        return None
    document = shipped_document()
    parse_matrix(document)
    row = _new_row(1, document, actor, None, PUBLISHED)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another process seeded it at the same moment
        return None
    return row


def current(session: Session) -> tuple[int, EscalationMatrix]:
    """The version new cases pin (the highest published) and its matrix; seeds version 1
    when the registry is empty."""
    row = _latest_published(session)
    if row is None:
        # Seeded here or, racing, by another request: either way it is there to read now.
        seed_shipped_matrix(session)
        row = _latest_published(session)
    if row is None:
        raise MatrixConflictError(
            "no published escalation matrix: publish a version (POST /escalation-matrix)"
        )
    return row.version, matrix_of(row)


def _latest_published(session: Session) -> MatrixRow | None:
    return session.exec(
        select(MatrixRow)
        .where(MatrixRow.status == PUBLISHED)
        .order_by(col(MatrixRow.version).desc())
    ).first()


def create_draft(
    session: Session, document: dict[str, Any], *, actor: str, note: str | None = None
) -> MatrixRow:
    """Validate and store a document as the next version, a draft. Raises
    InvalidTemplateError with every error (nothing stored)."""
    parse_matrix(document)
    newest = session.exec(select(MatrixRow.version).order_by(col(MatrixRow.version).desc()))
    version = (newest.first() or 0) + 1
    row = _new_row(version, document, actor, note, DRAFT)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent request took this number first
        raise MatrixConflictError(
            f"version {version} was stored by another request just now: send it again"
        ) from None
    return row


def _new_row(
    version: int, document: dict[str, Any], actor: str, note: str | None, status: str
) -> MatrixRow:
    now = datetime.now(UTC)
    published = status == PUBLISHED
    return MatrixRow(
        version=version,
        status=status,
        content=document,
        content_hash=content_hash(document),
        note=note,
        created_at=now,
        created_by=actor,
        published_at=now if published else None,
        published_by=actor if published else None,
    )


def publish(session: Session, version: int, *, actor: str) -> MatrixRow:
    """Publish a draft: immutable from now on, and new cases pin it."""
    row = _locked(session, version)
    if row.status != DRAFT:
        raise MatrixConflictError(
            f"escalation matrix v{version} is {row.status}: only a draft can be published"
        )
    parse_matrix(row.content)  # valid when stored; queues may have changed since
    released = session.exec(
        select(MatrixRow.version)
        .where(MatrixRow.status != DRAFT)
        .order_by(col(MatrixRow.version).desc())
    ).first()
    if released is not None and released > version:
        raise MatrixConflictError(
            f"escalation matrix v{released} is already released, so v{version} would never "
            "be pinned: store this content again as a new draft"
        )
    row.status, row.published_at, row.published_by = PUBLISHED, datetime.now(UTC), actor
    session.add(row)
    return row


def retire(session: Session, version: int, *, actor: str) -> MatrixRow:
    """New cases stop pinning a published version; cases opened under it keep their routes.
    The last published version cannot go: intake always needs one."""
    row = _locked(session, version)
    if row.status != PUBLISHED:
        raise MatrixConflictError(
            f"escalation matrix v{version} is {row.status}: only a published version can be retired"
        )
    others = session.exec(
        select(MatrixRow.version).where(MatrixRow.status == PUBLISHED, MatrixRow.version != version)
    ).first()
    if others is None:
        raise MatrixConflictError(
            f"escalation matrix v{version} is the only published version: new cases need "
            "one, so publish its successor first"
        )
    row.status, row.retired_at, row.retired_by = RETIRED, datetime.now(UTC), actor
    session.add(row)
    return row


def list_versions(session: Session) -> Sequence[MatrixRow]:
    return session.exec(select(MatrixRow).order_by(col(MatrixRow.version))).all()


def get_version(session: Session, version: int) -> MatrixRow:
    row = session.get(MatrixRow, version)
    if row is None:
        raise _unknown(session, version)
    return row


def matrix_of(row: MatrixRow) -> EscalationMatrix:
    """A stored version as a matrix. Not re-validated: what was valid when stored stays
    readable even after the rules tighten (e.g. a queue leaves `queues.yaml`)."""
    return EscalationMatrix.model_validate(row.content)


def diff_versions(session: Session, before: int, after: int) -> list[Change]:
    """What changed, rule by rule and level by level (`rules[0].levels[1].sla`)."""
    old, new = get_version(session, before), get_version(session, after)
    return diff_documents(
        matrix_of(old).model_dump(mode="json"), matrix_of(new).model_dump(mode="json")
    )


def _locked(session: Session, version: int) -> MatrixRow:
    """The row, locked until commit on PostgreSQL, so two status changes cannot interleave."""
    row = session.get(MatrixRow, version, with_for_update=True)
    if row is None:
        raise _unknown(session, version)
    return row


def _unknown(session: Session, version: int) -> UnknownMatrixVersionError:
    known = ", ".join(str(r.version) for r in list_versions(session)) or "none"
    return UnknownMatrixVersionError(f"the escalation matrix has no v{version} (versions: {known})")
