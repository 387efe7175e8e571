"""`casebook worker` serves the Temporal SDK's metrics to Prometheus when asked to."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")
WORKER_METRIC = "temporal_worker_task_slots_available"


async def test_the_worker_serves_temporal_sdk_metrics(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CASEBOOK_")},
        "CASEBOOK_DATA_DIR": str(tmp_path),
        "CASEBOOK_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "CASEBOOK_TASK_QUEUE": f"metrics-{uuid.uuid4().hex[:8]}",
        "CASEBOOK_WORKER_METRICS_ADDRESS": f"127.0.0.1:{port}",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        text = ""
        deadline = time.monotonic() + 60
        while WORKER_METRIC not in text and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read()  # type: ignore[union-attr]
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            time.sleep(0.5)
        # The worker's own series (its pollers), not only the client's request counters.
        assert WORKER_METRIC in text, text
        assert f'task_queue="{env["CASEBOOK_TASK_QUEUE"]}"' in text
    finally:
        worker.terminate()
        worker.wait(timeout=30)
