"""The FastAPI application: routers, error handlers, and the services it holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from temporalio.client import Client

from api import console
from api.deps import Services
from api.errors import AUTHENTICATED_ERRORS, install_error_handlers
from api.metrics import install_metrics
from api.request_limits import BodyLimit, NulInPath
from api.routes import audit, cases, escalation_matrix, escalations, health, sops, sweeps, tasks
from api.schemas import REQUEST_MAX_BYTES
from settings import Settings, get_settings
from store.db import make_engine
from workflows.client import connect


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    temporal: Client | None = None,
) -> FastAPI:
    """The app; tests hand in their own engine and Temporal client."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = Services(
            settings=settings,
            engine=engine or make_engine(settings.resolved_database_url()),
            temporal=temporal
            or await connect(settings.temporal_address, settings.temporal_namespace),
        )
        yield

    app = FastAPI(
        title="Casebook",
        summary="Cases, tasks and SLAs for outsourced Order-to-Cash operations",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_metrics(app)
    # Outermost: an oversized body or an impossible path is refused before anything reads it.
    app.add_middleware(NulInPath)
    app.add_middleware(BodyLimit, max_bytes=REQUEST_MAX_BYTES)
    app.include_router(
        health.router, responses={503: {"description": "the database or Temporal is down"}}
    )
    # Every other route authenticates and may be refused, conflict or time out: documented
    # once here, so each route declares only its success.
    for routes in (cases, tasks, escalations, sweeps, audit, sops, escalation_matrix):
        app.include_router(routes.router, responses=AUTHENTICATED_ERRORS)
    console.install(app)  # the web console under /console, over the same services
    return app
