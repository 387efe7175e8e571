"""The auditor's pages: timeline, replay verdict, the case as of an instant, evidence, archive."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from access.policy import Action, refuse_role
from api.console.pages import PREFIX, ConsoleRoute, render, see_other
from api.console.routes_work import case_context
from api.console.session import CsrfChecked, allowed
from api.deps import Services, ServicesDep
from api.schemas import MAX_PAGE, AsOf, EntityId
from api.services import audit as service
from api.services import cases as case_service
from audit.export import write_bundle
from audit.timeline import TimelineEntry
from domain.case_models import Actor, CaseSnapshot
from store import archive
from store.read_model import CaseFilter
from store.tables import SopVersionRow

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Actor, Depends(allowed(Action.AUDIT_READ))]
Replayer = Annotated[Actor, Depends(allowed(Action.AUDIT_REPLAY))]
Exporter = Annotated[Actor, Depends(allowed(Action.AUDIT_EXPORT))]


@router.get("/audit")
async def audit_home(
    request: Request, actor: Reader, svc: ServicesDep, case_id: str = ""
) -> Response:
    if case_id.strip():
        return see_other(f"{PREFIX}/audit/{case_id.strip()}")
    recent = []
    if refuse_role(actor, Action.LIST_CASES) is None:
        f = CaseFilter(limit=MAX_PAGE // 10)
        recent = list(await run_in_threadpool(case_service.search_cases, svc, actor, f))
    return render(request, "audit.html", recent=recent)


def _audit_context(
    actor: Actor, case: CaseSnapshot, entries: list[TimelineEntry]
) -> dict[str, Any]:
    return {
        **case_context(case),
        "entries": entries,
        "instants": [e.at.isoformat() for e in entries],
        "may_replay": refuse_role(actor, Action.AUDIT_REPLAY) is None,
        "may_export": refuse_role(actor, Action.AUDIT_EXPORT) is None,
    }


@router.get("/audit/{case_id}")
async def audit_case(request: Request, case_id: str, actor: Reader, svc: ServicesDep) -> Response:
    case, entries = await service.case_timeline(svc, actor, case_id)
    return render(request, "audit_case.html", **_audit_context(actor, case, entries))


@router.post("/audit/{case_id}/replay", dependencies=[CsrfChecked])
async def replay(request: Request, case_id: str, actor: Replayer, svc: ServicesDep) -> Response:
    verdict = (await service.replay(svc, actor, case_id)).summary()
    if request.headers.get("HX-Request") == "true":
        return render(request, "_verdict.html", verdict=verdict)
    case, entries = await service.case_timeline(svc, actor, case_id)
    return render(
        request, "audit_case.html", verdict=verdict, **_audit_context(actor, case, entries)
    )


@router.get("/audit/{case_id}/state")
async def state(
    request: Request, case_id: str, actor: Reader, svc: ServicesDep, as_of: AsOf
) -> Response:
    """The case as it stood at `as_of`, rebuilt by replaying its history (the API's own)."""
    snapshot = await service.state_at(svc, actor, case_id, as_of)
    if request.headers.get("HX-Request") == "true":
        return render(request, "_state.html", state=snapshot, as_of=as_of)
    case, entries = await service.case_timeline(svc, actor, case_id)
    return render(
        request,
        "audit_case.html",
        state=snapshot,
        as_of=as_of,
        **_audit_context(actor, case, entries),
    )


def _sop_row(svc: Services, case: CaseSnapshot) -> SopVersionRow | None:
    with Session(svc.engine) as session:
        return session.get(SopVersionRow, (case.sop.name, case.sop.version))


def _zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.iterdir()):
            bundle.write(path, f"{folder.name}/{path.name}")
    return buffer.getvalue()


@router.get("/audit/{case_id}/export")
async def export(case_id: EntityId, actor: Exporter, svc: ServicesDep) -> Response:
    """The evidence bundle `casebook audit export` writes, as one zip to download."""
    history = await service.history_of(svc, actor, Action.AUDIT_EXPORT, case_id)
    case, entries = await service.case_timeline(svc, actor, case_id)
    sop = await run_in_threadpool(_sop_row, svc, case)
    with tempfile.TemporaryDirectory() as out:
        folder = write_bundle(Path(out), case, history, entries, sop)
        data = _zipped(folder)
    name = f"evidence-{case.id}.zip"
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _verify(svc: Services) -> tuple[list[archive.ArchiveProblem], int]:
    with Session(svc.engine) as session:
        problems = archive.verify(session, svc.settings.archive_dir)
        count = len(session.exec(select(archive.CaseArchiveRow.case_id)).all())
    return problems, count


@router.get("/archive")
async def archive_page(request: Request, _: Exporter, svc: ServicesDep) -> Response:
    """The archive's hash chain checked now, as `casebook audit verify` does."""
    problems, count = await run_in_threadpool(_verify, svc)
    return render(
        request, "archive.html", problems=problems, count=count, checked_at=datetime.now(UTC)
    )
