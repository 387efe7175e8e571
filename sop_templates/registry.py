"""Template versions in the database: the shipped ones seeded as published, the latest pinned."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, col, select

from sop_templates.schema import SopTemplate
from sop_templates.validation import parse_template
from store.tables import SopVersionRow

SHIPPED_DIR = Path(__file__).parent / "shipped"


class NoPublishedVersionError(LookupError):
    pass


class VersionExistsError(ValueError):
    pass


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
    now = datetime.now(UTC)
    row = SopVersionRow(
        name=template.name,
        version=template.version,
        status="published",
        case_type=template.case_type,
        content=document,
        content_hash=content_hash(document),
        created_at=now,
        created_by=actor,
        published_at=now,
        published_by=actor,
    )
    session.add(row)
    return row


def latest_published(session: Session, case_type: str) -> SopVersionRow:
    """The version a new case of `case_type` pins: the highest published one."""
    row = session.exec(
        select(SopVersionRow)
        .where(SopVersionRow.case_type == case_type, SopVersionRow.status == "published")
        .order_by(col(SopVersionRow.version).desc())
    ).first()
    if row is None:
        raise NoPublishedVersionError(f"no published SOP for case type {case_type!r}")
    return row


def publish_document(session: Session, document: dict[str, Any], *, actor: str) -> SopVersionRow:
    """Validate and publish a new version; a published version is never changed."""
    template = parse_template(document)
    existing = session.get(SopVersionRow, (template.name, template.version))
    if existing is not None:
        raise VersionExistsError(
            f"{template.name} v{template.version} already exists ({existing.status}); "
            "a change is a new version"
        )
    return publish_new(session, template, document, actor)
