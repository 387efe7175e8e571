"""The review digest: each vendor's leads get their vendor's review once per period,
through the outbox and a real SMTP server; `casebook report schedule` makes its schedule."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from cli.report_commands import upsert_digest_schedule
from domain.case_models import HypercareTerms, Role
from sop_templates.registry import publish_document
from store.db import session_scope
from store.tables import UserRow
from tests.harness import Api, running_api, shipped_document
from tests.smtp_sink import SmtpSink
from tests.test_facts import _work_week
from workflows.digest_workflow import DIGEST_WORKFLOW, DigestInput

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The KPIs' SQL runs on both databases in test_facts.py; here the mail path matters.
    yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'casebook.db'}"


@pytest.fixture(scope="module")
def mail() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def digest_api(
    dev_server: WorkflowEnvironment, engine: Engine, mail: SmtpSink
) -> AsyncIterator[Api]:
    async with running_api(
        dev_server.client, engine, smtp_host="127.0.0.1", smtp_port=mail.port
    ) as api:
        yield api


async def test_each_vendors_leads_get_their_review_once(
    digest_api: Api, dev_server: WorkflowEnvironment, mail: SmtpSink
) -> None:
    api = digest_api
    vendor, other = (f"v-{uuid.uuid4().hex[:6]}" for _ in range(2))
    _work_week(api.engine, vendor)
    _work_week(api.engine, other)
    api.user(Role.LEAD, vendor=vendor, email=f"lead@{vendor}.example")
    api.user(Role.LEAD, vendor=other, email=f"lead@{other}.example")
    api.user(Role.LEAD, vendor=vendor)  # no address: nothing to send to
    api.user(Role.AGENT, vendor=vendor, email=f"agent@{vendor}.example")  # not a lead

    async def run() -> list[str]:
        return await dev_server.client.execute_workflow(
            DIGEST_WORKFLOW,
            DigestInput(kind="week", at=date(2026, 11, 23)),
            id=f"digest-{uuid.uuid4().hex[:8]}",
            task_queue=api.settings.task_queue,
            result_type=list[str],
        )

    first = await run()
    assert f"digest:week:{vendor}:2026-W48: sent" in first
    mine = [m for m in mail.messages() if m["To"] == f"lead@{vendor}.example"]
    assert len(mine) == 1
    assert mine[0]["Subject"] == f"Weekly review of {vendor}: 2026-W48"
    body = mine[0].get_content()
    assert "SLA attainment" in body and "0.8333" in body and other not in body

    again = await run()  # a retried or re-run schedule: the outbox sends nothing twice
    assert f"digest:week:{vendor}:2026-W48: already_sent" in again
    assert len([m for m in mail.messages() if m["To"] == f"lead@{vendor}.example"]) == 1


async def test_the_schedule_is_created_then_updated(
    digest_api: Api, dev_server: WorkflowEnvironment
) -> None:
    client, queue = dev_server.client, digest_api.settings.task_queue
    schedule_id = await upsert_digest_schedule(client, queue, "week", 6)
    try:
        await upsert_digest_schedule(client, queue, "week", 7)  # again: updated, not refused
        described = await client.get_schedule_handle(schedule_id).describe()
        [calendar] = described.schedule.spec.calendars
        assert [r.start for r in calendar.hour] == [7]
        assert [r.start for r in calendar.day_of_week] == [1]
    finally:
        await client.get_schedule_handle(schedule_id).delete()


async def test_the_sop_owner_gets_the_hypercare_digest_of_the_version_they_published(
    digest_api: Api, dev_server: WorkflowEnvironment, mail: SmtpSink
) -> None:
    api = digest_api
    owner, other = (f"owner-{uuid.uuid4().hex[:6]}@example.com" for _ in range(2))
    api.user(Role.SOP_OWNER, email=owner)
    api.user(Role.SOP_OWNER, email=other)  # did not publish it: no digest
    with session_scope(api.engine) as session:
        publisher = session.exec(select(UserRow).where(UserRow.email == owner)).one().name
        # A version above every shipped one (those were published when the store was seeded,
        # without a hypercare window: no digest for them).
        latest = shipped_document("dispute")
        new = latest["version"] + 1
        terms = HypercareTerms(days=7, warn_factor=0.5)
        publish_document(session, {**latest, "version": new}, actor=publisher, hypercare=terms)
    today = datetime.now(UTC).date()

    async def run() -> list[str]:
        return await dev_server.client.execute_workflow(
            DIGEST_WORKFLOW,
            DigestInput(kind="day", at=today),
            id=f"digest-{uuid.uuid4().hex[:8]}",
            task_queue=api.settings.task_queue,
            result_type=list[str],
        )

    assert f"hypercare:dispute:{new}:{today.isoformat()}: sent" in await run()
    subject = f"Hypercare of dispute v{new} against v{new - 1}: {today.isoformat()}"

    def mine() -> list[Any]:
        return [m for m in mail.messages() if m["To"] == owner and m["Subject"] == subject]

    [message] = mine()
    assert "(no task on this version yet)" in message.get_content()
    assert "Hypercare until " in message.get_content()
    assert [m for m in mail.messages() if m["To"] == other] == []
    assert f"hypercare:dispute:{new}:{today.isoformat()}: already_sent" in await run()
    assert len(mine()) == 1
