"""The worker: runs case workflows and their activities on one task queue."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.read_model import ReadModelActivities
from workflows.case_workflow import CaseWorkflow

WORKFLOWS = [CaseWorkflow]


def build_worker(client: Client, task_queue: str, engine: Engine) -> Worker:
    """A worker for `task_queue`; scale out by running more of them (processes or hosts)."""
    read_model = ReadModelActivities(engine)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[read_model.project_case],
        # Activities do blocking database I/O: they run on threads, off the event loop.
        activity_executor=ThreadPoolExecutor(max_workers=16),
    )
