"""Inbox at scale: the read model holding 100,000 tasks; the first page of a queue's inbox.

The rows go straight into the database (the product's own `TaskRow` table), spread over
queues and statuses as a month-end backlog would be. SQLite is the stack's own database,
read through `GET /tasks` (and through `store.read_model.list_tasks` to tell the API's
share from the query's); PostgreSQL, when reachable, is a throwaway database read with
`list_tasks` directly.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, delete, insert
from sqlmodel import Session, col

from bench.casebook_api import QUEUE
from bench.context import Bench
from bench.progress import say
from bench.stats import latency_ms
from store.db import make_engine, migrate
from store.read_model import TaskFilter, list_tasks
from store.tables import TaskRow

SEEDED_PREFIX = "BENCH-INBOX-"
BATCH = 5_000
# Where the month-end backlog sits: most of it in the agents' own queue.
QUEUE_WEIGHTS = {
    QUEUE: 40,
    "disputes-tier2": 10,
    "collections-tier1": 30,
    "collections-tier2": 10,
    "credit-review": 10,
}
STATUS_WEIGHTS = {"open": 50, "claimed": 10, "done": 40}
PG_ADMIN_URL = os.environ.get("CASEBOOK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def seeded_rows(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`count` task rows of made-up cases (the ids say they are the benchmark's)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    queues, q_weights = zip(*QUEUE_WEIGHTS.items(), strict=True)
    statuses, s_weights = zip(*STATUS_WEIGHTS.items(), strict=True)
    for n in range(count):
        status = rng.choices(statuses, s_weights)[0]
        created = now - timedelta(minutes=rng.randint(0, 30 * 24 * 60))
        yield {
            "id": f"{SEEDED_PREFIX}{n:06d}.t1",
            "case_id": f"{SEEDED_PREFIX}{n:06d}",
            "case_type": "dispute",
            "step": "triage",
            "title": "Triage the dispute",
            "queue": rng.choices(queues, q_weights)[0],
            "status": status,
            "assignee": None if status == "open" else f"agent-{rng.randint(1, 200)}",
            "priority": rng.choice((40, 50, 50, 50, 70)),
            "allowed_outcomes": ["accept", "not_a_dispute"],
            "vendor": None,
            "created_at": created,
            "sla_due": created + timedelta(hours=rng.choice((4, 8, 48))),
            "sla_state": "on_time",
            "revision": 1,
        }


def seed(engine: Engine, count: int) -> None:
    rows = seeded_rows(count)
    with engine.begin() as connection:
        while batch := [row for _, row in zip(range(BATCH), rows, strict=False)]:
            connection.execute(insert(TaskRow.__table__), batch)


def unseed(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(delete(TaskRow).where(col(TaskRow.id).startswith(SEEDED_PREFIX)))


def _seeded_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.query(TaskRow).filter(col(TaskRow.id).startswith(SEEDED_PREFIX)).count()


def first_page_direct(engine: Engine, requests: int) -> list[float]:
    """`list_tasks` for the queue's open tasks, first page, `requests` times."""
    latencies: list[float] = []
    f = TaskFilter(queues=[QUEUE], status="open", limit=50)
    for _ in range(requests):
        started = time.perf_counter()
        with Session(engine) as session:
            rows = list_tasks(session, f)
        latencies.append(time.perf_counter() - started)
        assert len(rows) == 50
    return latencies


async def inbox_sqlite(bench: Bench) -> dict[str, float]:
    """GET /tasks?queue=&status=open, first page, with the stack's read model at scale."""
    engine = bench.target.engine
    if _seeded_count(engine) == 0:
        say(f"inbox: inserting {bench.sizes.inbox_tasks} task rows into the stack's database")
        seed(engine, bench.sizes.inbox_tasks)
    api_open = await _first_page_api(bench, {"queue": QUEUE, "status": "open"})
    api_any = await _first_page_api(bench, {"queue": QUEUE})
    direct = first_page_direct(engine, bench.sizes.inbox_requests)
    return {
        "tasks_in_read_model": bench.sizes.inbox_tasks,
        **latency_ms("sqlite_api_open", api_open),
        **latency_ms("sqlite_api_all_statuses", api_any),
        **latency_ms("sqlite_list_tasks", direct),
    }


async def _first_page_api(bench: Bench, params: dict[str, str]) -> list[float]:
    latencies: list[float] = []
    for _ in range(bench.sizes.inbox_requests):
        started = time.perf_counter()
        rows = await bench.api.tasks(bench.agent, **params)
        latencies.append(time.perf_counter() - started)
        assert len(rows) == 50, f"the inbox page held {len(rows)} tasks"
    return latencies


def inbox_postgresql(count: int, requests: int, repeats: int) -> list[dict[str, float]]:
    """`list_tasks` on a throwaway PostgreSQL database, one figure set per repeat; none when
    PostgreSQL is unreachable."""
    try:
        with _throwaway_database(PG_ADMIN_URL) as url:
            engine = make_engine(url)
            try:
                migrate(engine)
                say(f"inbox: inserting {count} task rows into PostgreSQL")
                seed(engine, count)
                with engine.begin() as connection:
                    connection.exec_driver_sql("ANALYZE task_view")
                return [
                    latency_ms("postgresql_list_tasks", first_page_direct(engine, requests))
                    for _ in range(repeats)
                ]
            finally:
                engine.dispose()
    except psycopg.OperationalError as exc:
        say(f"inbox: PostgreSQL not reachable ({str(exc).strip()[:80]}): skipped")
        return []


@contextmanager
def _throwaway_database(admin_url: str) -> Iterator[str]:
    """A fresh database next to `admin_url`'s; dropped afterwards."""
    name = f"casebook_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
