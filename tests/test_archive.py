"""Closed cases are archived, hash-chained; audits work after Temporal forgets the case."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.archive import ArchiveActivities
from store import archive
from store.db import session_scope
from store.tables import CaseArchiveRow
from tests.conftest import FORGETFUL_NAMESPACE
from tests.harness import Api, eventually, running_api
from workflows.client import connect

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"


async def _closed_case(api: Api, agent: dict[str, str]) -> str:
    case = await api.open_dispute(agent, amount="120.00")
    cid = case["id"]
    for n, outcome in ((1, "accept"), (2, "valid")):
        await api.http.post(f"/tasks/{cid}.t{n}/claim", headers=agent)
        done = await api.http.post(
            f"/tasks/{cid}.t{n}/complete", json={"outcome": outcome}, headers=agent
        )
        assert done.status_code == 200, done.text
    return cid


async def _archived(api: Api, cid: str) -> CaseArchiveRow:
    def look() -> CaseArchiveRow | None:
        with Session(api.engine) as session:
            return archive.archived(session, cid)

    async def probe() -> CaseArchiveRow | None:
        return look()

    row = await eventually(probe, lambda r: r is not None, timeout=30)
    assert row is not None, f"{cid} was not archived"
    return row


@asynccontextmanager
async def _after_retention(dev_server: WorkflowEnvironment, api: Api) -> AsyncIterator[Api]:
    """The same database seen through a Temporal that no longer has the case: an empty
    namespace on the dev server (the dev server's own deletion is asynchronous and slow)."""
    target = dev_server.client.service_client.config.target_host
    forgetful = await connect(target, FORGETFUL_NAMESPACE)
    async with running_api(forgetful, api.engine) as later:
        yield later


async def _evidence(api: Api, auditor: dict[str, str], cid: str, as_of: str) -> dict[str, Any]:
    timeline = await api.http.get(f"/cases/{cid}/history", headers=auditor)
    replay = await api.http.post(f"/cases/{cid}/replay", headers=auditor)
    state = await api.http.get(f"/cases/{cid}/state", params={"as_of": as_of}, headers=auditor)
    for response in (timeline, replay, state):
        assert response.status_code == 200, response.text
    return {
        "timeline": timeline.json(),
        "replay": replay.json()["deterministic"],
        "state": (state.json()["status"], state.json()["current_step"]),
    }


async def test_audits_answer_the_same_from_the_archive(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    agent, auditor = api.user("agent", queues=[TIER1]), api.user("auditor")
    cid = await _closed_case(api, agent)
    await _archived(api, cid)
    detail = (await api.http.get(f"/cases/{cid}", headers=auditor)).json()
    midway = next(h["at"] for h in detail["history"] if h["event"] == "task_completed")
    from_temporal = await _evidence(api, auditor, cid, midway)
    assert from_temporal["state"] == ("open", "investigate")

    async with _after_retention(dev_server, api) as later:
        assert (await later.http.get(f"/cases/{cid}", headers=auditor)).json()["status"] == "closed"
        from_archive = await _evidence(later, auditor, cid, midway)
    assert from_archive == from_temporal


async def test_verify_names_an_altered_or_a_missing_archive(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    ids = [await _closed_case(api, agent) for _ in range(3)]
    for cid in ids:
        await _archived(api, cid)
    with Session(api.engine) as session:
        assert archive.verify(session) == []

    with session_scope(api.engine) as session:
        row = archive.archived(session, ids[1])
        assert row is not None
        original = row.history_gz
        row.history_gz = original[:-1] + bytes([original[-1] ^ 1])  # one byte flipped
    with Session(api.engine) as session:
        problems = archive.verify(session)
    assert [(p.case_id, "altered" in p.message) for p in problems] == [(ids[1], True)]

    with session_scope(api.engine) as session:
        row = archive.archived(session, ids[1])
        assert row is not None
        row.history_gz = original
    with session_scope(api.engine) as session:
        session.delete(archive.archived(session, ids[1]))
    with Session(api.engine) as session:
        named = {p.case_id for p in archive.verify(session)}
        last_seq = session.exec(
            select(col(CaseArchiveRow.seq)).order_by(col(CaseArchiveRow.seq).desc())
        ).first()
    assert ids[1] in named and ids[2] in named  # the hole, and the link that no longer fits
    assert last_seq is not None


async def test_an_archive_directory_keeps_a_copy_that_verify_checks(
    dev_server: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> None:
    async with running_api(dev_server.client, engine, archive_dir=tmp_path) as api:
        cid = await _closed_case(api, api.user("agent", queues=[TIER1]))
        row = await _archived(api, cid)
    path = tmp_path / archive.file_name(row)

    async def written() -> bool:  # right after the entry's commit
        return path.exists()

    assert await eventually(written, bool)
    assert path.read_bytes() == row.history_gz
    assert json.loads(gzip.decompress(path.read_bytes()))["events"]

    def problems() -> list[str]:
        """This case's problems, and files with no entry (other tests' cases have no file)."""
        with Session(engine) as session:
            found = archive.verify(session, tmp_path)
        return [p.message for p in found if p.case_id in (cid, None)]

    assert problems() == []
    path.write_bytes(row.history_gz[:-1] + bytes([row.history_gz[-1] ^ 1]))
    assert problems() == [f"archive file {path.name} altered"]
    path.unlink()
    assert problems() == [f"archive file {path.name} is missing"]
    (tmp_path / "99999999-DSP-X.history.json.gz").write_bytes(b"forged")
    assert "archive file 99999999-DSP-X.history.json.gz has no entry" in problems()


async def test_store_rebuild_replaces_phantoms_and_restores_archived_cases_deleting_nothing(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    from cli.main import _rebuild
    from settings import Settings
    from store.tables import CaseRow, TaskRow

    agent = api.user("agent", queues=[TIER1])
    closed = await _closed_case(api, agent)
    await _archived(api, closed)
    live = (await api.open_dispute(agent))["id"]
    with session_scope(api.engine) as session:
        for row in session.exec(select(TaskRow).where(TaskRow.case_id == closed)).all():
            session.delete(row)
        session.delete(session.get(CaseRow, closed))
        # A state Temporal never kept, written ahead of the truth with a higher revision.
        phantom = session.get(TaskRow, f"{live}.t1")
        assert phantom is not None
        phantom.status, phantom.revision = "done", 10_000

    def settings(namespace: str) -> Settings:
        return Settings(
            database_url=api.engine.url.render_as_string(hide_password=False),
            temporal_address=dev_server.client.service_client.config.target_host,
            temporal_namespace=namespace,
            task_queue=api.settings.task_queue,
        )

    def task_status(task_id: str) -> str | None:
        with Session(api.engine) as session:
            row = session.get(TaskRow, task_id)
            return row.status if row else None

    # A Temporal past its retention lists none of these cases: the archive still has one.
    assert await _rebuild(settings(FORGETFUL_NAMESPACE)) >= 1
    with Session(api.engine) as session:
        restored = session.get(CaseRow, closed)
        assert restored is not None and restored.status == "closed"
    assert task_status(f"{closed}.t2") == "done"
    assert task_status(f"{live}.t1") == "done"  # not in that Temporal: kept, not deleted

    assert await _rebuild(settings("default")) >= 2
    assert task_status(f"{live}.t1") == "open"  # the truth wins over the phantom's revision


# Last in the module: it archives a workflow that is no case, which a rebuild would restore.
async def test_the_archive_waits_for_its_case_to_close_instead_of_failing(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    """The archive child starts while its case still closes: the activity waits for the
    close rather than failing `CaseStillOpen` and retrying a second later."""
    closing = await dev_server.client.start_workflow(
        "CaseWorkflow", id=f"DSP-CLOSING-{uuid.uuid4().hex[:8]}", task_queue="nobody-polls"
    )
    archiver = ArchiveActivities(api.engine)
    archiving = asyncio.create_task(
        ActivityEnvironment(client=dev_server.client).run(archiver.archive_case, closing.id)
    )
    await asyncio.sleep(0.5)
    assert not archiving.done()  # waiting, not failed
    await closing.terminate("closed")
    chain_hash = await archiving
    assert (await _archived(api, closing.id)).chain_hash == chain_hash
