"""Users, roles and API tokens (stored hashed; the token itself is shown once).

A token works until its user is disabled, it expires, or it is rotated (the new one is shown
once, the old one stops working at once).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from domain.case_models import Actor, Role
from store.tables import UserRow

log = logging.getLogger(__name__)
TOKEN_PREFIX = "cb_"
# A hot token writes its last use at most this often (not on every request).
LAST_USED_EVERY = timedelta(minutes=1)


class UserExistsError(ValueError):
    pass


class UnknownUserError(LookupError):
    pass


class TokenRefusedError(Exception):
    """A token that does not let its bearer in; the message says why (shown in the 401)."""


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
    expires_at: datetime | None = None,
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
    token = _new_token()
    user = UserRow(
        name=name,
        role=role.value,
        vendor=vendor,
        cross_vendor=cross_vendor,
        email=email,
        queues=sorted(set(queues)),
        token_hash=hash_token(token),
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    session.add(user)
    session.flush()
    return user, token


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def user_for_token(session: Session, token: str) -> UserRow | None:
    return session.exec(select(UserRow).where(UserRow.token_hash == hash_token(token))).first()


def authenticate(session: Session, token: str, now: datetime) -> UserRow:
    """The user a token lets in now, its last use recorded; `TokenRefusedError` saying why not."""
    user = user_for_token(session, token)
    if user is None:
        raise TokenRefusedError("invalid or revoked token")
    if user.disabled_at is not None:
        raise TokenRefusedError(f"user {user.name} is disabled")
    if user.expires_at is not None and aware(user.expires_at) <= now:
        raise TokenRefusedError(f"the token of {user.name} expired at {aware(user.expires_at)}")
    _record_use(session, user, now)
    return user


def _record_use(session: Session, user: UserRow, now: datetime) -> None:
    """Write `last_used_at` when the stored one is a minute old; the UPDATE's own condition
    keeps concurrent requests from writing it more than once."""
    stale = now - LAST_USED_EVERY
    if user.last_used_at is not None and aware(user.last_used_at) > stale:
        return
    try:
        session.execute(
            update(UserRow)
            .where(
                col(UserRow.id) == user.id,
                or_(col(UserRow.last_used_at).is_(None), col(UserRow.last_used_at) <= stale),
            )
            .values(last_used_at=now)
        )
        session.commit()
    except OperationalError:
        # A busy database must not turn a valid token away: the next request records it.
        session.rollback()
        log.warning("could not record the last use of user %s", user.name, exc_info=True)
        return
    user.last_used_at = now


def list_users(session: Session) -> Sequence[UserRow]:
    return session.exec(select(UserRow).order_by(UserRow.name)).all()


def token_status(user: UserRow, now: datetime) -> str:
    """active, disabled or expired: what a request with the user's token gets."""
    if user.disabled_at is not None:
        return "disabled"
    if user.expires_at is not None and aware(user.expires_at) <= now:
        return "expired"
    return "active"


def disable_user(session: Session, name: str) -> UserRow:
    """The user's token answers 401 from now on (until `enable_user`)."""
    user = _named(session, name)
    if user.disabled_at is None:
        user.disabled_at = datetime.now(UTC)
        session.add(user)
    return user


def enable_user(session: Session, name: str) -> UserRow:
    user = _named(session, name)
    user.disabled_at = None
    session.add(user)
    return user


def rotate_token(session: Session, name: str) -> tuple[UserRow, str]:
    """A new token for the user (returned once); the old one stops working at once. The
    expiry and a disabled state stay as they were."""
    user = _named(session, name)
    token = _new_token()
    user.token_hash = hash_token(token)
    session.add(user)
    return user, token


def _named(session: Session, name: str) -> UserRow:
    user = user_named(session, name)
    if user is None:
        raise UnknownUserError(f"no user named {name!r}")
    return user


def aware(moment: datetime) -> datetime:
    """Some databases hand back naive datetimes: every stored one is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
