"""GET /healthz: is the database reachable, is Temporal? Answers name what is down; why is
logged server-side only (an exception's text carries hosts, users, sometimes passwords)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep
from store.db import ping

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 5


@router.get("/healthz")
async def healthz(svc: ServicesDep) -> JSONResponse:
    checks = {
        "database": await _check("database", run_in_threadpool(ping, svc.engine)),
        "temporal": await _check("temporal", svc.temporal.service_client.check_health()),
    }
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503
    )


async def _check(name: str, probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=PROBE_TIMEOUT_S)
    except Exception:  # any failure means "not reachable"; the details go to the log only
        log.warning("healthz: %s is down", name, exc_info=True)
        return "down"
    return "ok"
