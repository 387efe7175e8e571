"""The Casebook stack under test: a `casebook dev` of its own, or one already running.

A managed stack lives in a temporary data directory on free ports and is stopped with
SIGINT (what Ctrl-C does), which stops its children in order. An external stack is given
by `--stack-url` plus the usual `CASEBOOK_*` settings that say where its Temporal server
and its database are.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from sqlalchemy import Engine

from devstack.supervisor import billing_token
from domain.case_models import Role
from settings import Settings
from sop_templates.registry import retire, shipped_documents
from store.db import make_engine, session_scope
from store.users import create_user

CASEBOOK = [sys.executable, "-m", "cli.main"]
HEALTHY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass
class Target:
    """Where the stack under test answers: its API, Temporal server and database."""

    api_url: str
    temporal_address: str
    namespace: str
    task_queue: str
    database_url: str
    billing_url: str
    data_dir: Path | None = None
    billing_token: str = ""
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    def add_user(
        self, role: Role, queues: list[str] | None = None, email: str | None = None
    ) -> dict[str, str]:
        """A fresh user written straight into the stack's database; its auth header."""
        with session_scope(self.engine) as session:
            _, token = create_user(
                session,
                name=f"bench-{role.value}-{uuid.uuid4().hex[:8]}",
                role=role,
                vendor=None,
                queues=queues or [],
                email=email,
                # One tenant: its agents work every case, whoever opened it.
                cross_vendor=role == Role.AGENT,
            )
        return {"Authorization": f"Bearer {token}"}

    def worker_pid(self) -> int | None:
        """The pid of the stack's worker process, if it runs on this machine."""
        return self.processes().get("worker")

    def processes(self) -> dict[str, int]:
        """The stack's processes on this machine by part (temporal, worker, api), and bench."""
        found = {"bench": os.getpid()}
        for pid in _pids():
            part = self._part(pid)
            if part is not None:
                found.setdefault(part, pid)
        return found

    def _part(self, pid: int) -> str | None:
        cmdline = _cmdline(pid)
        if "start-dev" in cmdline:
            in_stack = self.data_dir is None or str(self.data_dir) in cmdline
            return "temporal" if in_stack else None
        for part in ("worker", "api"):
            if "cli.main" in cmdline and cmdline.endswith(f" {part}") and self._owns(pid):
                return part
        return None

    def _owns(self, pid: int) -> bool:
        if self.data_dir is None:
            return True
        return _environ(pid).get("CASEBOOK_DATA_DIR") == str(self.data_dir)


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The environment without CASEBOOK_* settings: the stack takes only what we pass."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CASEBOOK_")}


class ManagedStack:
    """`casebook dev` in a temporary data directory, on free ports."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = {**clean_env(), **(env or {})}  # CASEBOOK_* settings for every part
        self.data_dir = Path(tempfile.mkdtemp(prefix="casebook-bench-")) / "data"
        self.api_port, self.temporal_port, self.smtp_port, self.billing_port = (
            free_port() for _ in range(4)
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Target:
        command = [
            *CASEBOOK,
            "dev",
            *("--data-dir", str(self.data_dir)),
            *("--port", str(self.api_port)),
            *("--temporal-port", str(self.temporal_port)),
            *("--smtp-port", str(self.smtp_port)),
            *("--billing-port", str(self.billing_port)),
        ]
        log = (self.data_dir.parent / "dev.log").open("ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{self.api_port}"
        wait_healthy(url, self.process)
        return Target(
            api_url=url,
            temporal_address=f"127.0.0.1:{self.temporal_port}",
            namespace="default",
            task_queue=Settings.model_fields["task_queue"].default,
            database_url=f"sqlite:///{self.data_dir / 'casebook.db'}",
            billing_url=f"http://127.0.0.1:{self.billing_port}",
            data_dir=self.data_dir,
            billing_token=billing_token(self.data_dir),
        )

    def stop(self, keep: bool = False) -> None:
        """SIGINT, as Ctrl-C: the supervisor stops the API, worker, SMTP and Temporal.

        With `keep`, the data directory (and each part's log) stays for a post-mortem."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _secret(value: object) -> str:
    """A setting's value whether it is held as a plain string or a SecretStr."""
    reveal = getattr(value, "get_secret_value", None)
    return str(reveal() if reveal else value)


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"casebook dev exited with {process.returncode} while starting")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become healthy within {HEALTHY_TIMEOUT_S:.0f}s")


def external_target(api_url: str) -> Target:
    """A running stack: its Temporal and database come from the CASEBOOK_* settings."""
    wait_healthy(api_url)
    settings = Settings()
    return Target(
        api_url=api_url.rstrip("/"),
        temporal_address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue=settings.task_queue,
        database_url=settings.resolved_database_url(),
        billing_url=settings.billing_url,
        billing_token=_secret(settings.billing_token),
        data_dir=settings.data_dir.resolve() if not settings.database_url else None,
    )


def publish_short_sla_dispute(target: Target, version: int, budget_s: int) -> None:
    """`casebook sop publish` of a dispute version whose triage SLA is `budget_s` on 24x7."""
    # The newest shipped version: a new version must carry its approval rule.
    document = max(
        (d for d in shipped_documents() if d["name"] == "dispute"), key=lambda d: d["version"]
    )
    document["version"] = version
    triage = next(step for step in document["steps"] if step["id"] == "triage")
    triage["sla"] = {"budget": f"{budget_s}s", "calendar": "24x7"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"dispute.v{version}.yaml"
        path.write_text(yaml.safe_dump(document))
        env = {**clean_env(), "CASEBOOK_DATABASE_URL": target.database_url}
        subprocess.run(
            [*CASEBOOK, "sop", "publish", str(path)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )


def retire_dispute(target: Target, version: int) -> None:
    """New disputes go back to the previous published version."""
    with session_scope(target.engine) as session:
        retire(session, "dispute", version)


def next_dispute_version(target: Target) -> int:
    from sqlmodel import func, select

    from store.tables import SopVersionRow

    with session_scope(target.engine) as session:
        highest = session.exec(
            select(func.max(SopVersionRow.version)).where(SopVersionRow.name == "dispute")
        ).one()
    return int(highest or 0) + 1
