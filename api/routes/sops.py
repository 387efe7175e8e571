"""/sops: SOP template versions and their lifecycle (draft, publish, retire), diffs, and
which cases run on a version."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.schemas import MAX_LIST_ITEMS, EntityId, RequestBody, storable_json
from api.services import sops as service
from domain.case_models import Actor, HypercareTerms
from sop_templates.diff import render_text
from sop_templates.registry import hypercare_window
from sop_templates.schema import SopTemplate
from store.tables import SopVersionRow

router = APIRouter(prefix="/sops", tags=["sops"])

Reader = Annotated[Actor, Depends(authorize(Action.SOP_READ))]
Author = Annotated[Actor, Depends(authorize(Action.SOP_AUTHOR))]
Publisher = Annotated[Actor, Depends(authorize(Action.SOP_PUBLISH))]
Migrator = Annotated[Actor, Depends(authorize(Action.MIGRATE))]
# Versions are stored as PostgreSQL integers; a larger one could never exist.
MAX_VERSION = 2**31 - 1
Version = Annotated[int, Path(ge=1, le=MAX_VERSION)]


def inlined_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` written in place: OpenAPI resolves `#/$defs/...` against
    its own root, where they are not."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


# The body stays a plain dict at run time: the registry validates it (every error with its
# path) and hashes it as sent. OpenAPI shows the template's own schema.
def storable_document(document: dict[str, Any]) -> dict[str, Any]:
    storable_json(document)
    return document


SopDocument = Annotated[
    dict[str, Any],
    AfterValidator(storable_document),
    WithJsonSchema(inlined_schema(SopTemplate.model_json_schema())),
    Body(description="the template document, as JSON"),
]


class SopListing(BaseModel):
    name: str
    case_type: str
    latest_published: int | None  # the version new cases pin; None when none is published
    latest_version: int


class HypercareOut(BaseModel):
    """A version's hypercare window: from its publication for `days` days its steps warn
    after `warn_factor` of the usual time, and `owner` hears of every breach."""

    days: int
    warn_factor: float
    since: datetime
    until: datetime
    owner: str


class SopVersionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    version: int
    status: str  # draft, published, retired
    case_type: str
    content_hash: str
    created_at: datetime
    created_by: str
    published_at: datetime | None
    published_by: str | None
    hypercare: HypercareOut | None = None  # when published with a hypercare window

    @classmethod
    def of(cls, row: SopVersionRow) -> Self:
        window = hypercare_window(row)
        hypercare = (
            HypercareOut(
                days=row.hypercare_days or 0,
                warn_factor=window.warn_factor,
                since=window.since,
                until=window.until,
                owner=window.owner,
            )
            if window
            else None
        )
        return cls.model_validate(row).model_copy(update={"hypercare": hypercare})


class SopVersionOut(SopVersionSummary):
    content: dict[str, Any]


class ChangeOut(BaseModel):
    path: str
    change: str  # added, removed, changed
    before: Any = None
    after: Any = None


class SopDiffOut(BaseModel):
    name: str
    from_version: int
    to_version: int
    changes: list[ChangeOut]
    text: str  # the same changes as lines, as `casebook sop diff` prints them


class PinnedCaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    type: str
    status: str
    current_step: str | None
    vendor: str | None
    opened_at: datetime
    closed_at: datetime | None


@router.get("", response_model=list[SopListing])
async def list_sops(_: Reader, svc: ServicesDep) -> list[SopListing]:
    """Every SOP with the version new cases pin."""
    summaries = await run_in_threadpool(service.list_sops, svc)
    return [SopListing(**vars(s)) for s in summaries]


@router.get("/{name}/versions", response_model=list[SopVersionSummary])
async def list_versions(name: str, _: Reader, svc: ServicesDep) -> list[SopVersionSummary]:
    rows = await run_in_threadpool(service.list_versions, svc, name)
    return [SopVersionSummary.of(r) for r in rows]


@router.get("/{name}/versions/{version}", response_model=SopVersionOut)
async def get_version(name: str, version: Version, _: Reader, svc: ServicesDep) -> SopVersionOut:
    """The content, its status, who created and published it and when, its content hash."""
    return _out(await run_in_threadpool(service.get_version, svc, name, version))


@router.post(
    "/{name}/versions",
    status_code=201,
    response_model=SopVersionOut,
    responses={200: {"model": SopVersionOut, "description": "replaced a draft of that version"}},
)
async def create_draft(
    name: str,
    document: SopDocument,
    actor: Author,
    svc: ServicesDep,
    response: Response,
) -> SopVersionOut:
    """Validate and store a draft (201; 200 when it replaces a draft of that version).

    422 lists every error with its path and stores nothing; 409 when the version is
    published or retired (a change is a new version) or the numbering does not fit."""
    row, created = await run_in_threadpool(service.create_draft, svc, actor, name, document)
    if not created:
        response.status_code = 200
    return _out(row)


class PublishBody(RequestBody):
    # A hypercare window opened by this publication (none when left out).
    hypercare: HypercareTerms | None = None


@router.post("/{name}/versions/{version}/publish", response_model=SopVersionOut)
async def publish(
    name: str,
    version: Version,
    actor: Publisher,
    svc: ServicesDep,
    body: Annotated[PublishBody | None, Body()] = None,
) -> SopVersionOut:
    """Publish a valid draft: immutable from now on, and new cases pin it.

    With `{"hypercare": {"days": 1..90, "warn_factor": (0, 1]}}` a hypercare window opens:
    for `days` days, cases opened on this version warn after `warn_factor` of their steps'
    usual time-to-warning, every breach of theirs also emails the publisher (who needs an
    email address: 422 otherwise), and the publisher gets a daily digest comparing this
    version with the previous one."""
    hypercare = body.hypercare if body else None
    row = await run_in_threadpool(service.publish, svc, actor, name, version, hypercare)
    return _out(row)


@router.post("/{name}/versions/{version}/retire", response_model=SopVersionOut)
async def retire(name: str, version: Version, _: Publisher, svc: ServicesDep) -> SopVersionOut:
    """New cases stop pinning this version; cases already on it are unaffected."""
    return _out(await run_in_threadpool(service.retire, svc, name, version))


@router.get("/{name}/diff", response_model=SopDiffOut)
async def diff(
    name: str,
    _: Reader,
    svc: ServicesDep,
    from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION)],
) -> SopDiffOut:
    """What changed from one version to another: steps, transitions, SLAs, parameters."""
    changes = await run_in_threadpool(service.diff, svc, name, from_version, to_version)
    return SopDiffOut(
        name=name,
        from_version=from_version,
        to_version=to_version,
        changes=[ChangeOut(**c.as_dict()) for c in changes],
        text=render_text(changes, name, from_version, to_version),
    )


@router.get("/{name}/versions/{version}/cases", response_model=list[PinnedCaseOut])
async def cases_on_version(
    name: str, version: Version, _: Reader, svc: ServicesDep
) -> list[PinnedCaseOut]:
    """The cases pinned to this version (from the read model), oldest first."""
    rows = await run_in_threadpool(service.cases_on_version, svc, name, version)
    return [PinnedCaseOut.model_validate(r) for r in rows]


def _out(row: SopVersionRow) -> SopVersionOut:
    return SopVersionOut.of(row)


class MigrationBody(RequestBody):
    dry_run: bool = True
    case_ids: list[EntityId] | None = Field(default=None, max_length=MAX_LIST_ITEMS)


@router.post("/{name}/versions/{version}/migrations")
async def migrate(
    name: str, version: Version, body: MigrationBody, actor: Migrator, svc: ServicesDep
) -> dict[str, Any]:
    """Dry-run by default: which open cases on older versions can move here, and why not the
    others. With `dry_run: false`, move them; each move is recorded on the case."""
    report = await service.migrate_cases(svc, actor, name, version, body.dry_run, body.case_ids)
    return asdict(report)
