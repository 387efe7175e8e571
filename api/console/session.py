"""Console sign-in: the user's API token in an HttpOnly cookie, and a CSRF token per session.

The cookie holds the same token the JSON API takes as a bearer, so the console admits exactly
whom the API admits (a disabled or expired token signs the session out) and no session table
is needed. The CSRF token is an HMAC of the session's token: a page of another site can
neither read the cookie nor compute it, and every POST must carry it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from access.policy import Action
from api.deps import Services, permitted, services, user_of_token
from api.errors import ApiError
from domain.case_models import Actor

COOKIE = "casebook_session"
CSRF_FIELD = "csrf"
# Before there is a session, the sign-in form is protected by a double submit: a random
# value in a SameSite cookie and in the form, so no other site can sign a browser in.
LOGIN_COOKIE = "casebook_login"
# The token's lifetime is the user's (`casebook user add --expires`); the cookie's is a
# working day, so a forgotten browser signs out by itself.
COOKIE_MAX_AGE_S = 12 * 3600


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"casebook-console-csrf", hashlib.sha256).hexdigest()


def session_token(request: Request) -> str:
    token = request.cookies.get(COOKIE)
    if not token:
        raise ApiError("unauthorized", "not signed in: sign in with your API token")
    return token


def signed_in(request: Request, svc: Annotated[Services, Depends(services)]) -> Actor:
    """The signed-in user as the policy sees it (401 when the cookie's token is not valid)."""
    actor = svc.actor(user_of_token(svc, session_token(request)))
    request.state.console_actor = actor
    return actor


def allowed(action: Action) -> Callable[[Actor], Actor]:
    """Like `api.deps.authorize`: 403 when the role may not do `action` at all; the services
    then check the resource's scope exactly as for the JSON API."""

    def check(actor: Annotated[Actor, Depends(signed_in)]) -> Actor:
        return permitted(actor, action)

    check.action = action  # type: ignore[attr-defined]
    return check


async def csrf_checked(request: Request) -> None:
    """Refuse a POST whose form does not carry this session's CSRF token (403)."""
    token = session_token(request)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, csrf_token(token)):
        raise ApiError("forbidden", "the form's CSRF token is missing or wrong: reload the page")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def login_checked(request: Request, sent: str) -> None:
    """Refuse a sign-in whose form does not carry the nonce its page set (403)."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(sent, expected):
        raise ApiError("forbidden", "the sign-in form is stale or foreign: reload the page")


SignedIn = Annotated[Actor, Depends(signed_in)]
CsrfChecked = Depends(csrf_checked)
