"""Users, roles and API tokens (stored hashed; the token itself is shown once)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlmodel import Session, select

from store.tables import UserRow
from workflows.case_models import Actor, Role

TOKEN_PREFIX = "cb_"


class UserExistsError(ValueError):
    pass


class VendorRequiredError(ValueError):
    """Vendor isolation fails closed: an agent without a vendor would see nothing."""


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    session: Session,
    *,
    name: str,
    role: Role,
    vendor: str | None,
    queues: list[str],
    email: str | None = None,
    cross_vendor: bool = False,
) -> tuple[UserRow, str]:
    """A new user and its API token (returned once, never stored in clear)."""
    if role == Role.AGENT and vendor is None and not cross_vendor:
        raise VendorRequiredError(
            f"agent {name!r} needs a vendor (--vendor V), or --cross-vendor to work every "
            "vendor's cases"
        )
    if session.exec(select(UserRow).where(UserRow.name == name)).first():
        raise UserExistsError(f"user {name!r} already exists")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    user = UserRow(
        name=name,
        role=role.value,
        vendor=vendor,
        cross_vendor=cross_vendor,
        email=email,
        queues=sorted(set(queues)),
        token_hash=hash_token(token),
        created_at=datetime.now(UTC),
    )
    session.add(user)
    session.flush()
    return user, token


def user_for_token(session: Session, token: str) -> UserRow | None:
    return session.exec(select(UserRow).where(UserRow.token_hash == hash_token(token))).first()


def user_named(session: Session, name: str) -> UserRow | None:
    return session.exec(select(UserRow).where(UserRow.name == name)).first()


def actor_of(user: UserRow, *, shared_vendorless: bool = False) -> Actor:
    """The user as the policy sees it; `shared_vendorless` from CASEBOOK_VENDORLESS_CASES."""
    return Actor(
        user_id=user.id,
        name=user.name,
        role=Role(user.role),
        vendor=user.vendor,
        queues=list(user.queues),
        cross_vendor=user.cross_vendor,
        shared_vendorless=shared_vendorless and user.vendor is not None,
    )
