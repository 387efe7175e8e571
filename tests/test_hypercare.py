"""Hypercare: a window opened when a version is published (its steps warn earlier, its owner
is told), pure and on the registry; and the new version's steps beside the previous ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from pydantic import ValidationError
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from cli.main import app as cli
from domain.case_models import (
    ClaimTask,
    CompleteTask,
    HypercareTerms,
    HypercareWindow,
    Role,
    SlaState,
    SopRef,
)
from reports import qbr
from reports.hypercare import HypercareError, compare, in_hypercare, window_of
from reports.periods import period
from sop_templates.registry import (
    HypercareOwnerError,
    VersionExistsError,
    create_draft,
    publish,
    publish_document,
)
from store.db import session_scope
from store.read_model import project_snapshot
from store.tables import SopVersionRow
from store.users import create_user
from tests.harness import AGENT, case_input, opened_dispute, shipped_document
from tests.test_facts import MONDAY, _dispute, _work_week
from workflows import case_logic, case_sla

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


# --- the window: pure ---------------------------------------------------------------------

H = timedelta(hours=1)
WINDOW = HypercareWindow(
    sop_name="dispute",
    sop_version=2,
    since=MONDAY,
    until=MONDAY + timedelta(days=7),
    warn_factor=0.5,
    owner="olga",
    owner_email="olga@o2c.test",
)


def test_inside_its_window_a_clock_warns_after_the_factor_of_the_usual_time() -> None:
    assert WINDOW.warning_ratio(0.8, MONDAY) == 0.4
    assert WINDOW.warning_ratio(0.8, WINDOW.until - H) == 0.4
    assert WINDOW.warning_ratio(0.8, WINDOW.until) == 0.8  # its end is outside it
    assert WINDOW.warning_ratio(0.8, MONDAY - H) == 0.8
    assert WINDOW.model_copy(update={"warn_factor": 1.0}).warning_ratio(0.8, MONDAY) == 0.8


def _v2_dispute(at: datetime, window: HypercareWindow | None) -> tuple[Any, Any]:
    """A dispute v2 opened at `at` (24x7: business time is wall time) with `window` pinned."""
    inp = case_input("dispute", "100.00", region="24x7", version=2)
    inp = inp.model_copy(update={"hypercare": window})
    return inp, opened_dispute(inp, at)


def test_a_case_opened_in_the_window_records_it_and_its_tasks_warn_earlier() -> None:
    opened = MONDAY + H
    _, usual = _v2_dispute(opened, None)
    _, cared = _v2_dispute(opened, WINDOW)
    [entry] = [e for e in cared.history if e.event == "hypercare"]
    assert entry.detail == {
        "sop": "dispute",
        "sop_version": 2,
        "until": WINDOW.until.isoformat(),
        "warn_factor": 0.5,
        "owner": "olga",
    }
    assert "hypercare" not in [e.event for e in usual.history]
    triage, usual_triage = cared.tasks[0], usual.tasks[0]
    # Triage's 4h SLA warns at 80% as a rule (3h12m); in hypercare at 40% (1h36m).
    assert usual_triage.sla_warning_at == opened + timedelta(hours=3, minutes=12)
    assert triage.sla_warning_at == opened + timedelta(hours=1, minutes=36)
    assert triage.sla_due == usual_triage.sla_due == opened + 4 * H
    assert case_sla.next_deadline(cared) == triage.sla_warning_at
    case_sla.fire_deadlines(cared, triage.sla_warning_at)
    assert triage.sla_state == SlaState.WARNING


def test_a_task_opened_after_the_window_warns_as_usual() -> None:
    opened = WINDOW.until - H
    inp, case = _v2_dispute(opened, WINDOW)
    triage = case.tasks[0]
    assert triage.sla_warning_at == opened + timedelta(hours=1, minutes=36)
    later = WINDOW.until + H
    case_logic.claim(case, ClaimTask(task_id=triage.id, actor=AGENT), later)
    done = CompleteTask(task_id=triage.id, actor=AGENT, outcome="accept")
    case_logic.complete(case, inp.template, done, later)
    investigate = case.tasks[-1]
    assert investigate.step == "investigate" and investigate.sla is not None
    assert investigate.sla.warning_ratio == 0.8


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({"days": 0, "warn_factor": 0.5}, "days"),
        ({"days": 91, "warn_factor": 0.5}, "days"),
        ({"days": 7, "warn_factor": 0}, "warn_factor"),
        ({"days": 7, "warn_factor": 1.01}, "warn_factor"),
    ],
)
def test_terms_outside_their_ranges_are_refused_naming_the_field(
    terms: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        HypercareTerms.model_validate(terms)
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]


# --- the window in the registry -----------------------------------------------------------


def _owner(engine: Engine, email: str | None) -> str:
    name = f"owner-{uuid.uuid4().hex[:6]}"
    with session_scope(engine) as session:
        create_user(session, name=name, role=Role.SOP_OWNER, vendor=None, queues=[], email=email)
    return name


def _draft_v4(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_draft(session, {**shipped_document("dispute"), "version": 4}, actor="author")


def test_publishing_with_a_window_stores_it_with_the_owners_address(
    sqlite_engine: Engine,
) -> None:
    owner = _owner(sqlite_engine, "olga@o2c.test")
    _draft_v4(sqlite_engine)
    terms = HypercareTerms(days=3, warn_factor=0.25)
    with session_scope(sqlite_engine) as session:
        publish(session, "dispute", 4, actor=owner, hypercare=terms)
    window = window_of(sqlite_engine, "dispute", 4)
    assert window is not None
    assert (window.owner, window.owner_email, window.warn_factor) == (owner, "olga@o2c.test", 0.25)
    assert window.until - window.since == timedelta(days=3)
    assert window_of(sqlite_engine, "dispute", 3) is None  # the shipped one had none
    first, last = window.since.date(), (window.until - H).date()
    assert in_hypercare(sqlite_engine, first) == [window]
    assert in_hypercare(sqlite_engine, last + timedelta(days=1)) == []
    assert in_hypercare(sqlite_engine, first - timedelta(days=1)) == []
    # The QBR's SOP changes of the quarter name the window.
    changes = qbr._sop_changes(sqlite_engine, period("quarter", first))
    row = next(r for r in changes.rows if r[:2] == ["dispute", 4])
    assert row[-1] == f"until {window.until.date().isoformat()}, warnings at x0.25"


@pytest.mark.parametrize("email", [None, "unknown user"])
def test_a_publisher_who_cannot_be_told_gets_no_window_and_nothing_changes(
    sqlite_engine: Engine, email: str | None
) -> None:
    owner = _owner(sqlite_engine, None) if email is None else "nobody-by-that-name"
    _draft_v4(sqlite_engine)
    refused = pytest.raises(HypercareOwnerError, match=r"^hypercare: ")
    with refused, session_scope(sqlite_engine) as session:
        publish(
            session,
            "dispute",
            4,
            actor=owner,
            hypercare=HypercareTerms(days=3, warn_factor=0.5),
        )
    with session_scope(sqlite_engine) as session:
        row = session.get(SopVersionRow, ("dispute", 4))
        assert row is not None and row.status == "draft" and row.hypercare_until is None


# --- the CLI ------------------------------------------------------------------------------


def test_cli_publishes_with_a_window_only_for_an_owner_it_can_tell(tmp_path: Path) -> None:
    path = tmp_path / "dispute.v4.yaml"
    path.write_text(yaml.safe_dump({**shipped_document("dispute"), "version": 4}))
    data_dir = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    added = runner.invoke(
        cli, ["user", "add", "olga", "--role", "sop_owner", "--email", "olga@o2c.test", *data_dir]
    )
    assert added.exit_code == 0, added.output

    def publish_as(by: str, days: str) -> Result:
        options = ["--by", by, "--hypercare-days", days, "--warn-factor", "0.5"]
        return runner.invoke(cli, ["sop", "publish", str(path), *options, *data_dir])

    too_long = publish_as("olga", "91")
    assert too_long.exit_code == 1 and "error: --hypercare-days: " in too_long.output
    unknown = publish_as("nobody", "7")
    assert unknown.exit_code == 1 and "error: hypercare: 'nobody' is not" in unknown.output
    published = publish_as("olga", "7")
    assert published.exit_code == 0, published.output
    assert "published dispute v4" in published.output and "hypercare until" in published.output
