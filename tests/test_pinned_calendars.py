"""Business time is pinned in each case: a changed calendar file never moves a replay; an
applied change moves the open deadlines and is on the case's history."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from audit.replay import replay_case
from cli.calendar_commands import apply_to_open_cases
from escalations import calendars
from settings import Settings
from tests.harness import Api

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"


def _closed_on(day: date) -> Iterator[None]:
    """The shipped US calendar, as if `calendars.yaml` now closed the office on `day`."""
    original = calendars._SHIPPED["US"]
    calendars._SHIPPED["US"] = dataclasses.replace(original, closures=original.closures | {day})
    try:
        yield
    finally:
        calendars._SHIPPED["US"] = original


def _calendar_file_closed_on(path: Path, day: date) -> Path:
    specs = yaml.safe_load(calendars.CALENDARS_FILE.read_text())
    specs["US"]["closures"] = [day.isoformat()]
    path.write_text(yaml.safe_dump(specs))
    return path


async def test_a_changed_calendar_moves_neither_a_replay_nor_a_case_until_applied(
    api: Api, dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    agent = api.user("agent", queues=[TIER1])
    case = await api.open_dispute(agent, region="US")
    triage = case["tasks"][0]
    due = datetime.fromisoformat(triage["sla_due"])
    zone = calendars.get_calendar("US").zone
    closure = due.astimezone(zone).date()  # the day the open SLA falls due
    handle = dev_server.client.get_workflow_handle(case["id"])

    # Someone adds a closure day to the calendar file (or upgrades `holidays`).
    for _ in _closed_on(closure):
        verdict = await replay_case(await handle.fetch_history())
        assert verdict.deterministic, verdict.divergence
        replayed = verdict.states[-1].task(triage["id"])
        assert replayed is not None and replayed.sla_due == due  # not moved by the file

    settings = Settings(
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=api.settings.task_queue,
    )
    moved = await apply_to_open_cases(
        settings, _calendar_file_closed_on(tmp_path / "calendars.yaml", closure)
    )
    assert moved[case["id"]] == ["US"]
    after = (await api.http.get(f"/cases/{case['id']}", headers=agent)).json()
    new_due = datetime.fromisoformat(after["tasks"][0]["sla_due"])
    assert new_due.astimezone(zone).date() > closure  # the closed day no longer counts
    applied = [h for h in after["history"] if h["event"] == "calendar_applied"]
    assert len(applied) == 1 and applied[0]["actor"] == "calendars-apply"
    assert applied[0]["detail"]["calendar"] == "US"
    recorded = datetime.fromisoformat(applied[0]["detail"]["sla_due"][triage["id"]])
    assert recorded == new_due

    # Applying the same calendars again changes nothing and records nothing.
    again = await apply_to_open_cases(
        settings, _calendar_file_closed_on(tmp_path / "calendars.yaml", closure)
    )
    assert again[case["id"]] == []
    final = await replay_case(await handle.fetch_history())
    assert final.deterministic, final.divergence
