"""Request dependencies: the database, the Temporal client and the current user."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from api.errors import ApiError
from settings import Settings
from store.tables import UserRow
from store.users import TokenRefusedError, actor_of, authenticate
from workflows.case_models import Actor, Role


@dataclass
class Services:
    """What the app holds for its lifetime; set up in `api.app.create_app`."""

    settings: Settings
    engine: Engine
    temporal: Client
    # Claim-next's claims in flight in this process, by task id: the future tells whether the
    # claim won. Other claim-next requests pass over these tasks instead of racing for them.
    claiming: dict[str, asyncio.Future[bool]] = field(default_factory=dict)


def services(request: Request) -> Services:
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False)


def current_user(
    svc: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserRow:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError("unauthorized", "missing bearer token (Authorization: Bearer TOKEN)")
    # A short session: a connection held for the whole request would starve the pool while
    # requests wait on Temporal.
    with Session(svc.engine, expire_on_commit=False) as session:
        try:
            return authenticate(session, credentials.credentials, datetime.now(UTC))
        except TokenRefusedError as exc:
            raise ApiError("unauthorized", str(exc)) from None


def current_actor(user: Annotated[UserRow, Depends(current_user)]) -> Actor:
    return actor_of(user)


def require_roles(*roles: Role) -> Callable[[Actor], Actor]:
    """A dependency that lets only `roles` through (403 naming the allowed roles)."""
    allowed = {r.value for r in roles}

    def check(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        if actor.role.value not in allowed:
            raise ApiError(
                "forbidden",
                f"role {actor.role.value} may not do this; allowed: " + ", ".join(sorted(allowed)),
            )
        return actor

    return check


ServicesDep = Annotated[Services, Depends(services)]
