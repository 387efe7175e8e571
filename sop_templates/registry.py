"""Template versions in the database and their lifecycle: draft -> published -> retired.

- A draft is a validated version that no case uses yet; it may be replaced while a draft.
- Publishing makes it immutable: any change is a new version. New cases of the template's
  case type pin the highest published version (`latest_published`).
- Retiring stops new cases from pinning it (the previous published version takes over);
  cases already running on it carry its content in their workflow input and are unaffected.

Version numbers are written in the document and only grow: a new version must be higher
than every version of its name, and a draft can be published only above every version
already published or retired, so the latest published version is always the newest one.
One SOP name runs one case type (intake picks the SOP by case type alone).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from domain.case_models import HypercareTerms, HypercareWindow
from sop_templates.diff import Change, diff_templates
from sop_templates.schema import SopTemplate
from sop_templates.validation import InvalidTemplateError, TemplateError, parse_template
from store.tables import CaseRow, SopVersionRow
from store.users import user_named

SHIPPED_DIR = Path(__file__).parent / "shipped"
DRAFT, PUBLISHED, RETIRED = "draft", "published", "retired"


class NoPublishedVersionError(LookupError):
    pass


class UnknownSopError(LookupError):
    """No such SOP name or version in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])  # LookupError would show the repr, quotes and all


class SopConflictError(ValueError):
    """The change contradicts what the registry holds (a version's status, the numbering)."""


class VersionExistsError(SopConflictError):
    pass


@dataclass(frozen=True)
class SopSummary:
    name: str
    case_type: str
    latest_published: int | None  # what new cases pin, if anything
    latest_version: int


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form: the same content always has the same hash."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def load_document(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a template must be a YAML mapping")
    return document


def shipped_documents() -> list[dict[str, Any]]:
    return [load_document(p) for p in sorted(SHIPPED_DIR.glob("*.yaml"))]


def seed_shipped(session: Session, *, actor: str = "casebook") -> list[SopVersionRow]:
    """Publish every shipped template version not yet in the registry (idempotent)."""
    added = []
    for document in shipped_documents():
        template = parse_template(document)
        if session.get(SopVersionRow, (template.name, template.version)) is None:
            added.append(publish_new(session, template, document, actor))
    return added


def publish_new(
    session: Session, template: SopTemplate, document: dict[str, Any], actor: str
) -> SopVersionRow:
    """Store a version as published at once, without the lifecycle checks (seeding)."""
    row = _new_row(template, document, actor, PUBLISHED)
    session.add(row)
    return row


def _new_row(
    template: SopTemplate, document: dict[str, Any], actor: str, status: str
) -> SopVersionRow:
    now = datetime.now(UTC)
    published = status == PUBLISHED
    return SopVersionRow(
        name=template.name,
        version=template.version,
        status=status,
        case_type=template.case_type,
        content=document,
        content_hash=content_hash(document),
        created_at=now,
        created_by=actor,
        published_at=now if published else None,
        published_by=actor if published else None,
    )


def latest_published(session: Session, case_type: str) -> SopVersionRow:
    """The version a new case of `case_type` pins: the highest published one."""
    row = session.exec(
        select(SopVersionRow)
        .where(SopVersionRow.case_type == case_type, SopVersionRow.status == PUBLISHED)
        .order_by(col(SopVersionRow.version).desc())
    ).first()
    if row is None:
        raise NoPublishedVersionError(f"no published SOP for case type {case_type!r}")
    return row


def validated(document: Mapping[str, Any], *, name: str | None = None) -> SopTemplate:
    """The template, or every error at once, including a name that differs from `name`."""
    errors: list[TemplateError] = []
    if name is not None and document.get("name") != name:
        errors.append(TemplateError("name", f"must be {name!r}, the SOP this version is for"))
    try:
        template = parse_template(document, require_approval_rules=True)
    except InvalidTemplateError as exc:
        errors.extend(exc.errors)
    if errors:
        raise InvalidTemplateError(errors)
    return template


def create_draft(
    session: Session, document: dict[str, Any], *, actor: str, name: str | None = None
) -> tuple[SopVersionRow, bool]:
    """Store a valid document as a draft: (the row, True if new; False if it replaced a draft).

    Raises InvalidTemplateError (nothing stored), VersionExistsError when the version is
    published or retired, SopConflictError when the numbering or case type does not fit.
    """
    template = validated(document, name=name)
    versions = _versions(session, template.name)
    _check_case_type(session, template, versions)
    existing = next((r for r in versions if r.version == template.version), None)
    if existing is not None:
        return _replace_draft(session, existing, template, document, actor), False
    newest = max((r.version for r in versions), default=0)
    if template.version < newest:
        raise SopConflictError(
            f"{template.name} already has v{newest}: number a new version {newest + 1} or higher"
        )
    row = _new_row(template, document, actor, DRAFT)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent request stored this version first
        raise _exists(template.name, template.version, "just stored", newest + 1) from None
    return row, True


def _replace_draft(
    session: Session,
    row: SopVersionRow,
    template: SopTemplate,
    document: dict[str, Any],
    actor: str,
) -> SopVersionRow:
    session.refresh(row, with_for_update=True)  # a concurrent publish must not be overwritten
    if row.status != DRAFT:
        next_version = max(r.version for r in _versions(session, row.name)) + 1
        raise _exists(row.name, row.version, row.status, next_version)
    replacement = _new_row(template, document, actor, DRAFT)
    row.content, row.content_hash = replacement.content, replacement.content_hash
    row.created_at, row.created_by = replacement.created_at, replacement.created_by
    session.add(row)
    return row


def _exists(name: str, version: int, status: str, next_version: int) -> VersionExistsError:
    return VersionExistsError(
        f"{name} v{version} already exists ({status}) and cannot change; "
        f"a change is a new version (v{next_version})"
    )


def _check_case_type(
    session: Session, template: SopTemplate, versions: Sequence[SopVersionRow]
) -> None:
    if versions and versions[0].case_type != template.case_type:
        raise SopConflictError(
            f"{template.name} runs case type {versions[0].case_type!r}, not "
            f"{template.case_type!r}: a new case type needs a new SOP name"
        )
    other = session.exec(
        select(SopVersionRow.name).where(
            SopVersionRow.case_type == template.case_type, SopVersionRow.name != template.name
        )
    ).first()
    if other is not None:
        raise SopConflictError(
            f"case type {template.case_type!r} is run by SOP {other!r}: new cases pin one SOP "
            f"per case type, so write a new version of {other!r}"
        )


class HypercareOwnerError(ValueError):
    """A hypercare window asked of a publisher Casebook cannot email."""


def publish(
    session: Session,
    name: str,
    version: int,
    *,
    actor: str,
    hypercare: HypercareTerms | None = None,
) -> SopVersionRow:
    """Publish a valid draft; from now on new cases of its case type pin it. With
    `hypercare`, the version's window opens now (see `open_hypercare`)."""
    owner_email = _reachable_owner(session, actor) if hypercare is not None else None
    row = _locked(session, name, version)
    if row.status != DRAFT:
        raise SopConflictError(f"{name} v{version} is {row.status}: only a draft can be published")
    # The draft was valid when stored; queues or calendars may have changed since.
    parse_template(row.content, require_approval_rules=True)
    versions = _versions(session, name)
    released = max((r.version for r in versions if r.status != DRAFT), default=0)
    if released > version:
        raise SopConflictError(
            f"{name} v{released} is already released, so v{version} would never be pinned: "
            f"store this content as v{versions[-1].version + 1}"
        )
    row.status, row.published_at, row.published_by = PUBLISHED, datetime.now(UTC), actor
    if hypercare is not None and owner_email is not None:
        open_hypercare(row, hypercare, owner_email)
    session.add(row)
    return row


def open_hypercare(row: SopVersionRow, terms: HypercareTerms, owner_email: str) -> None:
    """The window starts at the publication and lasts `terms.days` days."""
    assert row.published_at is not None
    row.hypercare_days, row.hypercare_warn_factor = terms.days, terms.warn_factor
    row.hypercare_until = row.published_at + timedelta(days=terms.days)
    row.hypercare_owner_email = owner_email


def _reachable_owner(session: Session, name: str) -> str:
    """The publisher's email address: the SOP owner hears of every breach in hypercare, so a
    window needs a user with an address (set with `casebook user add ... --email`)."""
    user = user_named(session, name)
    if user is None or user.disabled_at is not None:
        raise HypercareOwnerError(
            f"hypercare: {name!r} is not an active Casebook user, so no one would be told "
            "of breaches; publish as the SOP owner's user"
        )
    if not user.email:
        raise HypercareOwnerError(
            f"hypercare: user {name!r} has no email address to send breach notices and the "
            "daily digest to; give the user one first"
        )
    return user.email


def hypercare_window(row: SopVersionRow) -> HypercareWindow | None:
    """The version's hypercare window, if it was published with one."""
    if row.hypercare_until is None or row.published_at is None:
        return None
    assert row.hypercare_warn_factor is not None and row.hypercare_owner_email is not None
    return HypercareWindow(
        sop_name=row.name,
        sop_version=row.version,
        since=row.published_at,
        until=row.hypercare_until,
        warn_factor=row.hypercare_warn_factor,
        owner=row.published_by or "",
        owner_email=row.hypercare_owner_email,
    )


def publish_document(
    session: Session,
    document: dict[str, Any],
    *,
    actor: str,
    hypercare: HypercareTerms | None = None,
) -> SopVersionRow:
    """Validate, store and publish a new version in one go (`casebook sop publish`)."""
    if hypercare is not None:
        _reachable_owner(session, actor)  # refused before anything is stored
    row, _ = create_draft(session, document, actor=actor)
    return publish(session, row.name, row.version, actor=actor, hypercare=hypercare)


def retire(session: Session, name: str, version: int) -> SopVersionRow:
    """Stop new cases from pinning a published version; running cases keep it."""
    row = _locked(session, name, version)
    if row.status != PUBLISHED:
        raise SopConflictError(
            f"{name} v{version} is {row.status}: only a published version can be retired"
        )
    row.status = RETIRED
    session.add(row)
    return row


def list_sops(session: Session) -> list[SopSummary]:
    """Every SOP name with its case type, the version new cases pin, and its newest version."""
    rows = session.exec(
        select(
            SopVersionRow.name, SopVersionRow.case_type, SopVersionRow.version, SopVersionRow.status
        ).order_by(col(SopVersionRow.name), col(SopVersionRow.version))
    ).all()
    summaries: dict[str, SopSummary] = {}
    for name, case_type, version, status in rows:  # in version order: the last one wins
        earlier = summaries.get(name)
        pinned = earlier.latest_published if earlier else None
        summaries[name] = SopSummary(
            name, case_type, version if status == PUBLISHED else pinned, version
        )
    return list(summaries.values())


def list_versions(session: Session, name: str) -> Sequence[SopVersionRow]:
    versions = _versions(session, name)
    if not versions:
        raise UnknownSopError(f"no SOP named {name!r}")
    return versions


def get_version(session: Session, name: str, version: int) -> SopVersionRow:
    row = session.get(SopVersionRow, (name, version))
    if row is None:
        raise _unknown_version(session, name, version)
    return row


def template_of(row: SopVersionRow) -> SopTemplate:
    """A stored version as a template. Not re-validated: what was valid when stored stays
    readable even after the rules tighten (e.g. a queue leaves `queues.yaml`)."""
    return SopTemplate.model_validate(row.content)


def diff_versions(session: Session, name: str, before: int, after: int) -> list[Change]:
    return diff_templates(
        template_of(get_version(session, name, before)),
        template_of(get_version(session, name, after)),
    )


def cases_on_version(session: Session, name: str, version: int) -> Sequence[CaseRow]:
    """The cases pinned to a version (read model), oldest first."""
    get_version(session, name, version)
    return session.exec(
        select(CaseRow)
        .where(CaseRow.sop_name == name, CaseRow.sop_version == version)
        .order_by(col(CaseRow.opened_at), col(CaseRow.id))
    ).all()


def _versions(session: Session, name: str) -> Sequence[SopVersionRow]:
    return session.exec(
        select(SopVersionRow).where(SopVersionRow.name == name).order_by(col(SopVersionRow.version))
    ).all()


def _locked(session: Session, name: str, version: int) -> SopVersionRow:
    """The row, locked until commit on PostgreSQL, so two status changes cannot interleave."""
    row = session.get(SopVersionRow, (name, version), with_for_update=True)
    if row is None:
        raise _unknown_version(session, name, version)
    return row


def _unknown_version(session: Session, name: str, version: int) -> UnknownSopError:
    # list_versions raises the plainer "no SOP named ..." when the name itself is unknown.
    known = [r.version for r in list_versions(session, name)]
    return UnknownSopError(
        f"{name} has no v{version} (versions: {', '.join(str(v) for v in known)})"
    )
