"""Migration 0011_fact_durations backfills the facts stored before it, on SQLite and
PostgreSQL: each duration is the exact microseconds between the fact's instants (the
work time less its pauses), as the projection writes it for new facts (store/facts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, select

from store.db import MIGRATIONS_DIR, make_engine, migrate
from store.facts import DURATIONS
from store.tables import FactRow

OPENED = datetime(2026, 10, 5, 9, 0, 0, 123_456, tzinfo=UTC)
US = timedelta(microseconds=1)


def _upgrade(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _fact(kind: str, n: int, **instants: datetime | None) -> dict[str, Any]:
    """A fact as migration 0009 knew it: no duration columns."""
    return {
        "id": f"{kind}:M-{n}",
        "kind": kind,
        "subject_id": f"M-{n}",
        "case_id": f"C-{n}",
        "case_type": "dispute",
        "vendor": "acme",
        "region": "FR",
        "sop_name": "dispute",
        "sop_version": 1,
        "status": "done" if instants.get("completed_at") else "open",
        "opened_at": OPENED,
        "sla_breached": False,
        "paused_seconds": 0.0,
        "paused_business_seconds": 0.0,
        "reassignments": 0,
        "loop_backs": 0,
        "reopens": 0,
        "billing_refusals": 0,
        "escalations": 0,
        "level": 0,
        "currency": "EUR",
        "amount": "10.00",
        "amount_credited": "0",
        "events_seen": 0,
        **instants,
    }


@pytest.fixture(scope="module")
def old_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_the_backfill_gives_each_fact_the_durations_of_its_instants(old_engine: Engine) -> None:
    _upgrade(old_engine, "0010_hypercare")
    touched = OPENED + timedelta(minutes=7, microseconds=999_999)
    claimed = OPENED + timedelta(hours=1)
    completed = claimed + timedelta(days=2, seconds=1, microseconds=-123_457)
    old = FactRow.__table__.c
    rows = [
        _fact("task", 1, first_touch_at=touched, claimed_at=claimed, completed_at=completed),
        _fact("task", 2),  # never claimed
        _fact("escalation", 3, first_touch_at=touched),  # acknowledged, not resolved
    ]
    rows[0]["paused_seconds"] = 3600.000001  # an hour and a microsecond on hold
    columns = [c for c in old if c.name not in DURATIONS]
    with old_engine.begin() as connection:
        for row in rows:
            stmt = FactRow.__table__.insert().values({c.name: row.get(c.name) for c in columns})
            connection.execute(stmt)

    migrate(old_engine)

    with old_engine.connect() as connection:
        durations = [old[name] for name in ("first_touch_us", "handle_us", "cycle_us", "work_us")]
        query = select(old.id, *durations)
        stored = {r[0]: tuple(r[1:]) for r in connection.execute(query)}
    handle = (2 * 86400 + 1) * 1_000_000 - 123_457
    assert (completed - claimed) // US == handle
    assert stored == {
        "escalation:M-3": ((touched - OPENED) // US, None, None, None),
        "task:M-1": (
            (touched - OPENED) // US,
            handle,
            (completed - OPENED) // US,
            handle - 3_600_000_001,
        ),
        "task:M-2": (None, None, None, None),
    }
