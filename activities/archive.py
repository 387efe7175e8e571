"""The archive activity: once a case has closed, keep its full history in the database
(and, when `CASEBOOK_ARCHIVE_DIR` is set, a copy as a file there)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from audit.runs import fetch_runs, runs_json
from store import archive
from store.db import session_scope

ARCHIVE_CASE = "archive_case"
# The case starts its archive child as the last thing it does, then closes: it closes
# within moments, unless its worker died meanwhile (then the activity is retried).
CLOSE_WAIT_S = 30.0


class ArchiveActivities:
    def __init__(self, engine: Engine, directory: Path | None = None) -> None:
        self._engine = engine
        self._directory = directory

    @activity.defn(name=ARCHIVE_CASE)
    async def archive_case(self, case_id: str) -> str:
        """Archive `case_id` once it is closed; returns its chain hash (idempotent)."""
        existing = await asyncio.to_thread(self._existing, case_id)
        if existing:
            return existing
        await _until_closed(activity.client().get_workflow_handle(case_id))
        # Every run of the case (it may have continued as new), in one entry.
        runs = await fetch_runs(activity.client(), case_id)
        return await asyncio.to_thread(self._append, case_id, runs_json(runs))

    def _existing(self, case_id: str) -> str | None:
        with session_scope(self._engine) as session:
            row = archive.archived(session, case_id)
            if row is None:
                return None
            if self._directory is not None:  # a retry after the entry, before the file
                archive.write_file(self._directory, row)
            return row.chain_hash

    def _append(self, case_id: str, history_json: str) -> str:
        try:
            with session_scope(self._engine) as session:
                row = archive.append(session, case_id, history_json)
        except IntegrityError as exc:
            # Another archiver took the same chain head (or this case): retry on the new head.
            raise ApplicationError(f"archive head moved while archiving {case_id}") from exc
        # After the commit: a file only ever copies an entry of the chain.
        if self._directory is not None:
            archive.write_file(self._directory, row)
        return row.chain_hash


async def _until_closed(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait for the case's run to close (a long poll on Temporal, no retry storm of
    `CaseStillOpen` while the case writes its last event); raise that if it does not."""
    if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
        return
    try:
        await asyncio.wait_for(handle.result(follow_runs=False), CLOSE_WAIT_S)
    except TimeoutError as exc:
        # Retried with backoff until the case's last event is written.
        raise ApplicationError(
            f"case {handle.id} has not closed yet", type="CaseStillOpen"
        ) from exc
    except WorkflowFailureError:
        pass  # closed all the same (failed, terminated, timed out): its history is final
