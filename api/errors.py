"""Errors as JSON with a clear message and the right status; one shape for all of them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from workflows.client import CaseCommandError

STATUS_BY_KIND = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "invalid": 422,
    "timeout": 504,
    "unavailable": 503,
}


class ErrorOut(BaseModel):
    """Every error the API answers, whatever its status."""

    error: str = Field(description="what kind: " + ", ".join(STATUS_BY_KIND), examples=["invalid"])
    message: str = Field(description="for people: what was wrong, naming the field")
    details: Any = Field(
        default=None,
        description="for programs: e.g. `fields` (each invalid field and why) or `allowed`",
    )


_WHEN = {
    400: "a body that cannot be read as JSON",
    401: "no bearer token, or one that is not valid",
    403: "the caller's role or scope may not do this",
    404: "no such case, task, escalation or SOP (or not visible to the caller)",
    409: "a conflict: taken by someone else, the wrong state, a reused Idempotency-Key",
    413: "the request body is over the size cap",
    422: "invalid input; the message and `details.fields` name each field",
    503: "a service the API depends on (billing, for the sweeps) did not answer",
    504: "Temporal did not answer in time; the command may still land, retry with the same "
    "Idempotency-Key",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each with the one error schema."""
    return {status: {"model": ErrorOut, "description": _WHEN[status]} for status in statuses}


# What any authenticated route can answer besides its success; declared once for all routers.
AUTHENTICATED_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422, 503, 504)


class ApiError(Exception):
    def __init__(self, kind: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.details = kind, message, details


def error_body(kind: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": kind, "message": message}
    if details:
        body["details"] = details
    return body


def _response(kind: str, message: str, details: Any = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if kind == "unauthorized" else None
    return JSONResponse(
        error_body(kind, message, details), status_code=STATUS_BY_KIND[kind], headers=headers
    )


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _response(exc.kind, exc.message, exc.details)

    @app.exception_handler(CaseCommandError)
    async def _case_error(_: Request, exc: CaseCommandError) -> JSONResponse:
        return _response(exc.kind, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return _response("invalid", message, {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "invalid"}.get(
            exc.status_code, "invalid"
        )
        return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code)
