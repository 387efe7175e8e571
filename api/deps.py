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

from access.policy import Action, Refusal, refuse_role
from api.errors import ApiError
from domain.case_models import Actor
from settings import Settings
from store.tables import UserRow
from store.users import TokenRefusedError, actor_of, authenticate


@dataclass
class Services:
    """What the app holds for its lifetime; set up in `api.app.create_app`."""

    settings: Settings
    engine: Engine
    temporal: Client
    # Claim-next's claims in flight in this process, by task id: the future tells whether the
    # claim won. Other claim-next requests pass over these tasks instead of racing for them.
    claiming: dict[str, asyncio.Future[bool]] = field(default_factory=dict)

    def actor(self, user: UserRow) -> Actor:
        """`user` as the policy sees it, under this deployment's CASEBOOK_VENDORLESS_CASES."""
        return actor_of(user, shared_vendorless=self.settings.vendorless_cases == "shared")


def services(request: Request) -> Services:
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False)


def current_user(
    svc: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserRow:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError("unauthorized", "missing bearer token (Authorization: Bearer TOKEN)")
    return user_of_token(svc, credentials.credentials)


def user_of_token(svc: Services, token: str) -> UserRow:
    """The user `token` lets in now (401 saying why not): the API's bearer and the console's
    session cookie carry the same token."""
    # A short session: a connection held for the whole request would starve the pool while
    # requests wait on Temporal.
    with Session(svc.engine, expire_on_commit=False) as session:
        try:
            return authenticate(session, token, datetime.now(UTC))
        except TokenRefusedError as exc:
            raise ApiError("unauthorized", str(exc)) from None


def current_actor(
    svc: Annotated[Services, Depends(services)],
    user: Annotated[UserRow, Depends(current_user)],
) -> Actor:
    return svc.actor(user)


def authorize(action: Action) -> Callable[[Actor], Actor]:
    """The route's action in the policy (access/policy.py): 403 when the caller's role may
    not do it; services then check the resource's scope (queue, vendor, assignee)."""

    def check(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        return permitted(actor, action)

    # Routes are matched against the policy table by this (tests/test_policy_matrix.py).
    check.action = action  # type: ignore[attr-defined]
    return check


def permitted(actor: Actor, action: Action) -> Actor:
    """`actor`, if its role may do `action` at all (403 otherwise)."""
    refusal = refuse_role(actor, action)
    if refusal:
        raise ApiError(refusal.kind, refusal.message)
    return actor


def refused(refusal: Refusal | None) -> None:
    """Raise the policy's refusal as the API error of its kind (403, 404 or 409)."""
    if refusal:
        raise ApiError(refusal.kind, refusal.message, dict(refusal.details) or None)


ServicesDep = Annotated[Services, Depends(services)]
