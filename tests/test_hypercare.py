"""Hypercare: a new SOP version's steps beside the previous version's, per step."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from domain.case_models import ClaimTask, CompleteTask, SopRef
from reports.hypercare import HypercareError, compare
from sop_templates.registry import VersionExistsError, publish_document
from store.read_model import project_snapshot
from store.tables import SopVersionRow
from tests.harness import AGENT, opened_dispute, shipped_document
from tests.test_facts import MONDAY, _dispute, _work_week
from workflows import case_logic

PUBLISHED = MONDAY + timedelta(days=7)  # the Monday after the known week
NOW = PUBLISHED + timedelta(days=7)


def _publish_v3(engine: Engine) -> None:
    from store.db import session_scope

    document = {**shipped_document("dispute", 2), "version": 3}
    try:
        with session_scope(engine) as session:
            publish_document(session, document, actor="owner")
    except VersionExistsError:
        pass  # v3 ships: published when the store first opened; only its date is set here
    table = SopVersionRow.__table__
    with engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.name == "dispute", table.c.version == 3)
            .values(published_at=PUBLISHED)
        )


def _v3_case(engine: Engine, vendor: str) -> Any:
    inp = _dispute(vendor)
    inp = inp.model_copy(update={"sop": SopRef(name="dispute", version=3, content_hash="x")})
    t = PUBLISHED + timedelta(days=1)
    case = opened_dispute(inp, t)
    task = case.tasks[0].id
    case_logic.claim(case, ClaimTask(task_id=task, actor=AGENT), t + timedelta(minutes=30))
    cmd = CompleteTask(task_id=task, actor=AGENT, outcome="accept")
    case_logic.complete(case, inp.template, cmd, t + timedelta(hours=1))
    project_snapshot(engine, case)
    return case


def test_the_new_versions_steps_beside_the_previous_ones(sqlite_engine: Engine) -> None:
    vendor = f"v-{uuid.uuid4().hex[:6]}"
    _work_week(sqlite_engine, vendor)  # on v2, the week before v3 was published
    _publish_v3(sqlite_engine)
    _v3_case(sqlite_engine, vendor)
    rows = {r["step"]: r for r in compare(sqlite_engine, "dispute", 3, NOW, vendor=vendor).rows}
    assert set(rows) == {"triage", "investigate"}  # the steps v3 has run so far
    triage = rows["triage"]
    assert (triage["new_fell_due"], triage["new_attainment"]) == (1, 1.0)
    assert (triage["previous_fell_due"], triage["previous_attainment"]) == (3, 0.6667)
    assert triage["new_aht_median_s"] == 1800 and triage["previous_aht_median_s"] == 3600
    assert rows["investigate"]["previous_loop_backs"] == 1  # C's second investigation


def test_only_a_published_version_with_one_before_it(sqlite_engine: Engine) -> None:
    with pytest.raises(HypercareError, match=r"^version:"):
        compare(sqlite_engine, "dispute", 1, datetime.now(UTC))
    with pytest.raises(HypercareError, match=r"^sop:"):
        compare(sqlite_engine, "dispute", 9, datetime.now(UTC))
