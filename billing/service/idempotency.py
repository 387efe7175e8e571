"""Exactly-once writes: the first answer to an idempotency key is kept and returned again.

The write and its key are stored in one transaction: either both land or neither does. Two
racing requests with one key cannot both apply: the loser's insert of the key fails and its
whole transaction (the write included) rolls back; it then returns the winner's answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.contract import BillingBusinessError
from billing.service.tables import IdempotencyRow

MAX_KEY_LENGTH = 300


def request_hash(operation: str, request: dict[str, Any]) -> str:
    canonical = json.dumps([operation, request], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replayed(row: IdempotencyRow, digest: str) -> dict[str, Any]:
    if row.request_hash != digest:
        raise BillingBusinessError(
            "idempotency_key_reused",
            f"idempotency key {row.key!r} was used for a different {row.operation} request",
            422,
        )
    return dict(row.response)


def once(
    engine: Engine,
    key: str,
    operation: str,
    request: dict[str, Any],
    write: Callable[[Session], BaseModel],
) -> dict[str, Any]:
    """Apply `write` once per key; a repeat of the same request gets the stored answer."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BillingBusinessError(
            "idempotency_key_required",
            f"write requests need an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters",
            400,
        )
    digest = request_hash(operation, request)
    with Session(engine) as session:
        found = session.get(IdempotencyRow, key)
        if found is not None:
            return _replayed(found, digest)
        response = write(session).model_dump(mode="json")
        session.add(
            IdempotencyRow(
                key=key,
                operation=operation,
                request_hash=digest,
                response=response,
                created_at=datetime.now(UTC),
            )
        )
        try:
            session.commit()
            return response
        except IntegrityError:
            session.rollback()
    with Session(engine) as session:
        winner = session.get(IdempotencyRow, key)
        assert winner is not None, "the key's insert failed, so another request stored it"
        return _replayed(winner, digest)
