"""The SOP owner's pages: versions, the side-by-side diff, uploads, lifecycle, migrations."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from access.policy import Action, refuse_role
from api.console.pages import PREFIX, ConsoleRoute, render, see_other
from api.console.session import CsrfChecked, allowed
from api.deps import ServicesDep
from api.errors import ApiError
from api.routes.sops import MAX_VERSION, Version
from api.schemas import storable_json
from api.services import sops as service
from domain.case_models import Actor, HypercareTerms
from sop_templates import registry
from sop_templates.validation import InvalidTemplateError

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Actor, Depends(allowed(Action.SOP_READ))]
Author = Annotated[Actor, Depends(allowed(Action.SOP_AUTHOR))]
Publisher = Annotated[Actor, Depends(allowed(Action.SOP_PUBLISH))]
Migrator = Annotated[Actor, Depends(allowed(Action.MIGRATE))]
# An SOP is a page or two of YAML; the API's body cap applies before this.
MAX_UPLOAD_BYTES = 512 * 1024


@router.get("/sops")
async def sops(request: Request, _: Reader, svc: ServicesDep) -> Response:
    return render(request, "sops.html", sops=await run_in_threadpool(service.list_sops, svc))


def _may(actor: Actor, action: Action) -> bool:
    return refuse_role(actor, action) is None


async def _sop_context(svc: ServicesDep, actor: Actor, name: str) -> dict[str, Any]:
    versions = await run_in_threadpool(service.list_versions, svc, name)
    if not versions:
        raise ApiError("not_found", f"no SOP named {name!r}")
    return {
        "name": name,
        "versions": versions,
        "may_author": _may(actor, Action.SOP_AUTHOR),
        "may_publish": _may(actor, Action.SOP_PUBLISH),
        "may_migrate": _may(actor, Action.MIGRATE),
    }


@router.get("/sops/{name}")
async def sop(request: Request, name: str, actor: Reader, svc: ServicesDep) -> Response:
    return render(request, "sop.html", **await _sop_context(svc, actor, name))


@dataclass(frozen=True)
class SideBySide:
    """One row of the two documents: the left line, the right line, and how they differ."""

    left: str
    right: str
    kind: str  # same, changed, removed, added


def side_by_side(before: str, after: str) -> list[SideBySide]:
    left, right = before.splitlines(), after.splitlines()
    rows: list[SideBySide] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=left, b=right).get_opcodes():
        if tag == "equal":
            rows += [SideBySide(line, line, "same") for line in left[i1:i2]]
            continue
        olds, news = left[i1:i2], right[j1:j2]
        for k in range(max(len(olds), len(news))):
            old = olds[k] if k < len(olds) else ""
            new = news[k] if k < len(news) else ""
            kind = "changed" if old and new else "removed" if old else "added"
            rows.append(SideBySide(old, new, kind))
    return rows


def _yaml(content: dict[str, Any]) -> str:
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)


@router.get("/sops/{name}/diff")
async def diff(
    request: Request,
    name: str,
    _: Reader,
    svc: ServicesDep,
    from_version: Annotated[int, Query(ge=1, le=MAX_VERSION)],
    to_version: Annotated[int, Query(ge=1, le=MAX_VERSION)],
) -> Response:
    changes = await run_in_threadpool(service.diff, svc, name, from_version, to_version)
    before = await run_in_threadpool(service.get_version, svc, name, from_version)
    after = await run_in_threadpool(service.get_version, svc, name, to_version)
    return render(
        request,
        "sop_diff.html",
        name=name,
        before=before,
        after=after,
        changes=changes,
        rows=side_by_side(_yaml(before.content), _yaml(after.content)),
    )


async def _document(upload: UploadFile) -> dict[str, Any]:
    """The uploaded YAML as a template document, or 422 saying why it cannot be one."""
    raw = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ApiError("too_large", f"file: over {MAX_UPLOAD_BYTES} bytes")
    try:
        document = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ApiError("invalid", f"file: not YAML: {exc}", {"field": "file"}) from None
    if not isinstance(document, dict):
        raise ApiError("invalid", "file: a template is a YAML mapping", {"field": "file"})
    storable_json(document)
    return document


@router.post("/sops/{name}/upload", dependencies=[CsrfChecked])
async def upload(
    request: Request,
    name: str,
    actor: Author,
    svc: ServicesDep,
    file: UploadFile,
    intent: Annotated[str, Form()] = "validate",
) -> Response:
    """Validate an uploaded YAML (every error at its path); `save` stores it as a draft."""
    document = await _document(file)
    context = await _sop_context(svc, actor, name)
    try:
        registry.validated(document, name=name)
    except InvalidTemplateError as exc:
        return render(
            request, "sop.html", status_code=422, errors=exc.errors, filename=file.filename,
            **context,
        )  # fmt: skip
    if intent == "save":
        row, _created = await run_in_threadpool(service.create_draft, svc, actor, name, document)
        notice = f"{file.filename}: saved as draft v{row.version}."
        context = await _sop_context(svc, actor, name)
    else:
        notice = f"{file.filename}: valid, no errors (not saved)."
    return render(request, "sop.html", notice=notice, **context)


@router.post("/sops/{name}/versions/{version}/publish", dependencies=[CsrfChecked])
async def publish(
    name: str,
    version: Version,
    actor: Publisher,
    svc: ServicesDep,
    hypercare_days: Annotated[str, Form(max_length=8)] = "",
    warn_factor: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Publish, with a hypercare window when its days are given (as the API's `hypercare`)."""
    hypercare = _hypercare_terms(hypercare_days.strip(), warn_factor.strip())
    await run_in_threadpool(service.publish, svc, actor, name, version, hypercare)
    return see_other(f"{PREFIX}/sops/{name}")


def _hypercare_terms(days: str, factor: str) -> HypercareTerms | None:
    """The form's window; a factor without days is an error, not silently dropped."""
    if not days and not factor:
        return None
    if not days:
        raise ApiError("invalid", "hypercare_days: needed with a warn factor")
    return HypercareTerms.model_validate({"days": days, "warn_factor": factor or "1"})


@router.post("/sops/{name}/versions/{version}/retire", dependencies=[CsrfChecked])
async def retire(name: str, version: Version, _: Publisher, svc: ServicesDep) -> Response:
    await run_in_threadpool(service.retire, svc, name, version)
    return see_other(f"{PREFIX}/sops/{name}")


@router.post("/sops/{name}/versions/{version}/migrations", dependencies=[CsrfChecked])
async def migrate(
    request: Request,
    name: str,
    version: Version,
    actor: Migrator,
    svc: ServicesDep,
    apply: Annotated[str, Form()] = "",
) -> Response:
    report = await service.migrate_cases(svc, actor, name, version, apply != "yes", None)
    context = await _sop_context(svc, actor, name)
    return render(request, "sop.html", report=report, **context)
