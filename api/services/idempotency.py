"""Idempotency-Keys: one key per user names one request; a retry repeats it, a key reused
for another request is refused (409 naming the key). `POST /cases` keeps the case a key
opened; task commands and escalations keep the command's answer (`store/tables.py`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Header
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from domain.case_models import Actor
from store.db import session_scope
from store.tables import CommandKeyRow
from workflows.client import derived_update_id

M = TypeVar("M", bound=BaseModel)

# The header routes take: a client's name for one request, per user.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="retry with the same key to get the first answer again; the same key "
        "with another request, or another user's key, answers 409",
    ),
]


class KeyedRow(Protocol):
    request_hash: str


R = TypeVar("R", bound=KeyedRow)


def request_hash(payload: Any) -> str:
    """A request's fingerprint: the same JSON body (keys in any order) hashes the same."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def key_reused(key: str, why: str = "with a different request") -> ApiError:
    return ApiError("conflict", f"Idempotency-Key {key!r} was already used {why}")


def claim_key(session: Session, key: str, find: Callable[[], R | None], new: R) -> tuple[R, bool]:
    """The row the key names, inserting `new` if there is none yet: (row, whether new).

    A concurrent request with the same key loses the insert on the unique constraint and
    reads the winner's row; a row with another request's hash is a 409 naming the key.
    """
    existing = find()
    if existing is None:
        try:
            with session.begin_nested():
                session.add(new)
            return new, True
        except IntegrityError:
            existing = find()  # a concurrent retry won the race
    assert existing is not None
    if existing.request_hash != new.request_hash:
        raise key_reused(key)
    return existing, False


@dataclass(frozen=True)
class KeyedCommand:
    row_id: int
    update_id: str
    answer: dict[str, Any] | None  # the first attempt's answer, once it is known


async def run_once(
    engine: Engine,
    actor: Actor,
    key: str | None,
    command: str,
    target: str,
    request: dict[str, Any],
    send: Callable[[str | None], Awaitable[M]],
    answer_type: type[M],
) -> M:
    """Send a case command at most once per (user, key): a retry after success repeats the
    stored answer; one still unanswered is sent again with the same Temporal update id, so
    Temporal joins it to the first attempt while it still holds that one."""
    if not key:
        return await send(None)
    keyed = await run_in_threadpool(reserve, engine, actor, key, command, target, request)
    if keyed.answer is not None:
        return answer_type.model_validate(keyed.answer)
    result = await send(keyed.update_id)
    await run_in_threadpool(record_answer, engine, keyed.row_id, result.model_dump(mode="json"))
    return result


def reserve(
    engine: Engine, actor: Actor, key: str, command: str, target: str, request: dict[str, Any]
) -> KeyedCommand:
    user_id = actor.user_id or 0
    new = CommandKeyRow(
        user_id=user_id,
        key=key,
        command=command,
        target=target,
        request_hash=request_hash({"command": command, "target": target, **request}),
        created_at=datetime.now(UTC),
    )
    with session_scope(engine) as session:
        if _used_by_another_user(session, user_id, key, target):
            raise key_reused(key, f"by another user on {target}")
        row, _ = claim_key(session, key, lambda: _command_key(session, user_id, key), new)
        assert row.id is not None
        update_id = derived_update_id(user_id, command, target, key)
        return KeyedCommand(row_id=row.id, update_id=update_id, answer=row.answer)


def record_answer(engine: Engine, row_id: int, answer: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        row = session.get(CommandKeyRow, row_id)
        if row is not None and row.answer is None:
            row.answer = answer
            row.answered_at = datetime.now(UTC)
            session.add(row)


def _command_key(session: Session, user_id: int, key: str) -> CommandKeyRow | None:
    return session.exec(
        select(CommandKeyRow).where(CommandKeyRow.user_id == user_id, CommandKeyRow.key == key)
    ).first()


def _used_by_another_user(session: Session, user_id: int, key: str, target: str) -> bool:
    """A key names one user's request: another user's retry must not read its answer."""
    return (
        session.exec(
            select(CommandKeyRow.id).where(
                CommandKeyRow.target == target,
                CommandKeyRow.key == key,
                CommandKeyRow.user_id != user_id,
            )
        ).first()
        is not None
    )
