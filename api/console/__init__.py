"""The web console under /console: server-rendered pages over the same services and policy
as the JSON API (see docs/ARCHITECTURE.md, "The console")."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import routes_audit, routes_lead, routes_reports, routes_sop, routes_work
from api.console.pages import HERE, PREFIX


def install(app: FastAPI) -> None:
    """Mount the console's pages and its static files (CSS, JS, the vendored htmx)."""
    for routes in (routes_work, routes_lead, routes_sop, routes_audit, routes_reports):
        app.include_router(routes.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
