"""GET /healthz: is the database reachable, is Temporal?"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep
from store.db import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(svc: ServicesDep) -> JSONResponse:
    checks = {
        "database": await _check(run_in_threadpool(ping, svc.engine)),
        "temporal": await _check(svc.temporal.service_client.check_health()),
    }
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503
    )


async def _check(probe: object) -> str:
    try:
        await asyncio.wait_for(probe, timeout=5)  # type: ignore[arg-type]
    except Exception as exc:  # any failure means "not reachable", reported in words
        return f"error: {exc.__class__.__name__}: {exc}"
    return "ok"
