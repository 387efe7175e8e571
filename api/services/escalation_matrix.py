"""Escalation matrix versions behind /escalation-matrix: the registry's lifecycle, its
refusals as API errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlmodel import Session

from api.deps import Services
from api.errors import ApiError
from api.services.sops import invalid_document
from domain.case_models import Actor
from escalations import matrix_registry as registry
from sop_templates.diff import Change
from sop_templates.validation import InvalidTemplateError
from store.db import session_scope
from store.tables import EscalationMatrixVersionRow


@contextmanager
def _registry(svc: Services) -> Iterator[Session]:
    """One transaction; what the registry refuses is rolled back and becomes an ApiError."""
    try:
        with session_scope(svc.engine) as session:
            yield session
    except InvalidTemplateError as exc:
        raise invalid_document(exc, "the escalation matrix") from None
    except registry.MatrixConflictError as exc:
        raise ApiError("conflict", str(exc)) from None
    except registry.UnknownMatrixVersionError as exc:
        raise ApiError("not_found", str(exc)) from None


def list_versions(svc: Services) -> Sequence[EscalationMatrixVersionRow]:
    with _registry(svc) as session:
        registry.seed_shipped_matrix(session)
        return registry.list_versions(session)


def get_version(svc: Services, version: int) -> EscalationMatrixVersionRow:
    with _registry(svc) as session:
        return registry.get_version(session, version)


def create_draft(
    svc: Services, actor: Actor, document: dict[str, Any], note: str | None
) -> EscalationMatrixVersionRow:
    with _registry(svc) as session:
        registry.seed_shipped_matrix(session)  # the shipped matrix stays version 1
        return registry.create_draft(session, document, actor=actor.name, note=note)


def publish(svc: Services, actor: Actor, version: int) -> EscalationMatrixVersionRow:
    with _registry(svc) as session:
        return registry.publish(session, version, actor=actor.name)


def retire(svc: Services, actor: Actor, version: int) -> EscalationMatrixVersionRow:
    with _registry(svc) as session:
        return registry.retire(session, version, actor=actor.name)


def diff(svc: Services, before: int, after: int) -> list[Change]:
    with _registry(svc) as session:
        return registry.diff_versions(session, before, after)
