"""Outages on a case: a billing call or an email retried while billing or SMTP is down.

Pure functions the case workflow calls. The workflow runs such a call in rounds of a few
attempts (Temporal retries inside a round); each failed round lands here, so the case shows
how many attempts failed, the last error and when the next round goes. The history gets
`outage_began` at the first failed round and `outage_ended` when the call goes through;
the rounds between only bump `revision` (the read model shows the count).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.case_models import CaseSnapshot, Outage
from workflows.case_core import record

BILLING = "billing"
EMAIL = "email"

# Attempts per round, inside Temporal's retry policy (2 s, then 4 s apart).
ROUND_ATTEMPTS = 3
ROUND_INITIAL_INTERVAL = timedelta(seconds=2)
# Between rounds the wait keeps doubling per failed attempt, up to this.
MAX_BACKOFF = timedelta(minutes=5)


def backoff(attempts: int) -> timedelta:
    """How long to wait after `attempts` failed attempts before the next round."""
    exponent = min(max(attempts - 1, 0), 20)  # 2 s * 2**20 is far beyond the cap
    return min(ROUND_INITIAL_INTERVAL * 2**exponent, MAX_BACKOFF)


def outage_of(case: CaseSnapshot, key: str) -> Outage | None:
    return next((o for o in case.outages if o.idempotency_key == key), None)


def round_failed(
    case: CaseSnapshot,
    system: str,
    step: str,
    key: str,
    error: str,
    now: datetime,
    retry_at: datetime,
) -> Outage:
    """A round of `ROUND_ATTEMPTS` attempts of the call `key` failed with `error`."""
    outage = outage_of(case, key)
    if outage is None:
        outage = Outage(
            system=system,
            step=step,
            idempotency_key=key,
            began_at=now,
            attempts=ROUND_ATTEMPTS,
            last_error=error,
            last_attempt_at=now,
            retry_at=retry_at,
        )
        case.outages = [*case.outages, outage]
        record(case, now, "outage_began", step=step, detail=_detail(outage))
        return outage
    outage.attempts += ROUND_ATTEMPTS
    outage.last_error, outage.last_attempt_at, outage.retry_at = error, now, retry_at
    case.revision += 1  # not on the history: the count changes, the outage goes on
    return outage


def call_went_through(case: CaseSnapshot, key: str, now: datetime) -> None:
    """The call `key` succeeded (or was answered for good): its outage, if any, is over."""
    outage = outage_of(case, key)
    if outage is None:
        return
    case.outages = [o for o in case.outages if o.idempotency_key != key]
    detail = {
        **_detail(outage),
        "retry_at": None,
        "lasted_seconds": (now - outage.began_at).total_seconds(),
    }
    record(case, now, "outage_ended", step=outage.step, detail=detail)


def _detail(outage: Outage) -> dict[str, object]:
    return {
        "system": outage.system,
        "idempotency_key": outage.idempotency_key,
        "attempts": outage.attempts,
        "last_error": outage.last_error,
        "retry_at": outage.retry_at.isoformat() if outage.retry_at else None,
    }
