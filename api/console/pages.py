"""Rendering console pages, and the route class that turns the services' refusals into them.

A console route calls the same services as the JSON API; what they refuse (`ApiError`, a
case's `CaseCommandError`, an invalid body) becomes a page with the same status and message
the API would have answered, instead of JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from access.policy import Action, refuse_role
from api.console.session import COOKIE, CSRF_FIELD, csrf_token
from api.errors import STATUS_BY_KIND, ApiError
from domain.case_models import Actor, Role
from workflows.client import CaseCommandError

HERE = Path(__file__).parent
PREFIX = "/console"
templates = Jinja2Templates(directory=HERE / "templates")

# The navigation: each entry shows only to a role that may do its action.
NAV: tuple[tuple[str, str, Action], ...] = (
    ("Inbox", f"{PREFIX}/inbox", Action.INBOX),
    ("Escalations", f"{PREFIX}/board", Action.BOARD_READ),
    ("Team queues", f"{PREFIX}/queues", Action.BOARD_ACT),
    ("SOPs", f"{PREFIX}/sops", Action.SOP_READ),
    ("Audit", f"{PREFIX}/audit", Action.AUDIT_READ),
    ("Archive", f"{PREFIX}/archive", Action.AUDIT_EXPORT),
    ("Reports", f"{PREFIX}/reports", Action.REPORTS),
)


def nav_for(actor: Actor) -> list[tuple[str, str]]:
    return [(label, url) for label, url, action in NAV if refuse_role(actor, action) is None]


# Where each role starts its day; a role not named starts on its first page in NAV.
HOME = {
    Role.LEAD: f"{PREFIX}/board",
    Role.SOP_OWNER: f"{PREFIX}/sops",
    Role.AUDITOR: f"{PREFIX}/audit",
}


def home_for(actor: Actor) -> str:
    """Where a user lands after signing in."""
    entries = nav_for(actor)
    first = entries[0][1] if entries else f"{PREFIX}/login"
    return HOME.get(actor.role, first)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    actor: Actor | None = getattr(request.state, "console_actor", None)
    token = request.cookies.get(COOKIE)
    return templates.TemplateResponse(
        request,
        template,
        {
            "actor": actor,
            "nav": nav_for(actor) if actor else [],
            "csrf_field": CSRF_FIELD,
            "csrf": csrf_token(token) if token and actor else "",
            "prefix": PREFIX,
            "now": datetime.now(UTC),
            "partial": request.headers.get("HX-Request") == "true",
            **context,
        },
        status_code=status_code,
    )


def see_other(url: str) -> RedirectResponse:
    """After a POST: the browser GETs the page again (no resubmission on reload)."""
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, kind: str, message: str, details: Any = None) -> Response:
    status = STATUS_BY_KIND.get(kind, 400)
    if status == 401 and request.method == "GET":
        return see_other(f"{PREFIX}/login?next={quote(request.url.path)}")
    return render(
        request, "error.html", status_code=status, kind=kind, message=message, details=details
    )


def _fields(errors: list[Any]) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(p) for p in e["loc"] if p not in ("body", "form", "query"))
            or "form",
            "message": e["msg"],
        }
        for e in errors
    ]


class ConsoleRoute(APIRoute):
    """Refusals as HTML pages with the API's status; a GET without a session goes to sign-in."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (ApiError, CaseCommandError) as exc:
                return error_page(request, exc.kind, exc.message, exc.details)
            except (RequestValidationError, ValidationError) as exc:
                fields = _fields(list(exc.errors()))
                message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
                return error_page(request, "invalid", message, {"fields": fields})

        return handle
