"""SOP template versions behind /sops: the registry's lifecycle, its refusals as API errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlmodel import Session

from api.deps import Services
from api.errors import ApiError
from sop_templates import registry
from sop_templates.diff import Change
from sop_templates.validation import InvalidTemplateError
from store.db import session_scope
from store.tables import CaseRow, SopVersionRow
from workflows.case_models import Actor


@contextmanager
def _registry(svc: Services) -> Iterator[Session]:
    """One transaction; what the registry refuses is rolled back and becomes an ApiError."""
    try:
        with session_scope(svc.engine) as session:
            yield session
    except InvalidTemplateError as exc:
        raise _invalid(exc) from None
    except registry.SopConflictError as exc:
        raise ApiError("conflict", str(exc)) from None
    except registry.UnknownSopError as exc:
        raise ApiError("not_found", str(exc)) from None


def _invalid(exc: InvalidTemplateError) -> ApiError:
    count = len(exc.errors)
    return ApiError(
        "invalid",
        f"the template has {count} error{'' if count == 1 else 's'}: {exc}",
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


def publish(svc: Services, actor: Actor, name: str, version: int) -> SopVersionRow:
    with _registry(svc) as session:
        return registry.publish(session, name, version, actor=actor.name)


def retire(svc: Services, name: str, version: int) -> SopVersionRow:
    with _registry(svc) as session:
        return registry.retire(session, name, version)


def diff(svc: Services, name: str, before: int, after: int) -> list[Change]:
    with _registry(svc) as session:
        return registry.diff_versions(session, name, before, after)


def cases_on_version(svc: Services, name: str, version: int) -> Sequence[CaseRow]:
    with _registry(svc) as session:
        return registry.cases_on_version(session, name, version)
