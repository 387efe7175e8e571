"""/escalation-matrix: versions of the escalation matrix and their lifecycle (draft,
publish, retire), diffs, and who changed what when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.routes.sops import MAX_VERSION, ChangeOut, inlined_schema, storable_document
from api.schemas import Note
from api.services import escalation_matrix as service
from domain.case_models import Actor
from escalations.matrix import EscalationMatrix
from sop_templates.diff import render_text
from store.tables import EscalationMatrixVersionRow

router = APIRouter(prefix="/escalation-matrix", tags=["escalation matrix"])

Reader = Annotated[Actor, Depends(authorize(Action.MATRIX_READ))]
Author = Annotated[Actor, Depends(authorize(Action.MATRIX_AUTHOR))]
Version = Annotated[int, Path(ge=1, le=MAX_VERSION)]

MatrixDocument = Annotated[
    dict[str, Any],
    AfterValidator(storable_document),
    WithJsonSchema(inlined_schema(EscalationMatrix.model_json_schema())),
    Body(description="the matrix document (`escalations/matrix.yaml` as JSON)"),
]


class MatrixVersionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    status: str  # draft, published, retired
    content_hash: str
    note: str | None
    created_at: datetime
    created_by: str
    published_at: datetime | None
    published_by: str | None
    retired_at: datetime | None
    retired_by: str | None


class MatrixVersionOut(MatrixVersionSummary):
    content: dict[str, Any]


class MatrixListing(BaseModel):
    current_version: int | None  # what new cases pin: the highest published version
    versions: list[MatrixVersionSummary]


class MatrixDiffOut(BaseModel):
    from_version: int
    to_version: int
    changes: list[ChangeOut]
    text: str


@router.get("", response_model=MatrixListing)
async def list_versions(_: Reader, svc: ServicesDep) -> MatrixListing:
    """Every version with its status, who created, published or retired it, and when."""
    rows = await run_in_threadpool(service.list_versions, svc)
    published = [r.version for r in rows if r.status == "published"]
    return MatrixListing(
        current_version=max(published, default=None),
        versions=[MatrixVersionSummary.model_validate(r) for r in rows],
    )


@router.get("/versions/{version}", response_model=MatrixVersionOut)
async def get_version(version: Version, _: Reader, svc: ServicesDep) -> MatrixVersionOut:
    return _out(await run_in_threadpool(service.get_version, svc, version))


@router.post("", status_code=201, response_model=MatrixVersionOut)
async def create_draft(
    document: MatrixDocument,
    actor: Author,
    svc: ServicesDep,
    note: Annotated[Note | None, Query(description="what changed, for the record")] = None,
) -> MatrixVersionOut:
    """Validate and store the document as the next version, a draft. 422 lists every error
    with its path (`rules[0].levels[1].sla`) and stores nothing."""
    return _out(await run_in_threadpool(service.create_draft, svc, actor, document, note))


@router.post("/versions/{version}/publish", response_model=MatrixVersionOut)
async def publish(version: Version, actor: Author, svc: ServicesDep) -> MatrixVersionOut:
    """Publish a draft: immutable from now on, and new cases pin it."""
    return _out(await run_in_threadpool(service.publish, svc, actor, version))


@router.post("/versions/{version}/retire", response_model=MatrixVersionOut)
async def retire(version: Version, actor: Author, svc: ServicesDep) -> MatrixVersionOut:
    """New cases stop pinning this version (the previous published one takes over); cases
    opened under it keep their routes. 409 for the only published version."""
    return _out(await run_in_threadpool(service.retire, svc, actor, version))


@router.get("/diff", response_model=MatrixDiffOut)
async def diff(
    _: Reader,
    svc: ServicesDep,
    from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION)],
) -> MatrixDiffOut:
    """What changed: rule by rule, level by level (queues, SLAs, matches)."""
    changes = await run_in_threadpool(service.diff, svc, from_version, to_version)
    return MatrixDiffOut(
        from_version=from_version,
        to_version=to_version,
        changes=[ChangeOut(**c.as_dict()) for c in changes],
        text=render_text(changes, "escalation matrix", from_version, to_version),
    )


def _out(row: EscalationMatrixVersionRow) -> MatrixVersionOut:
    return MatrixVersionOut.model_validate(row)
