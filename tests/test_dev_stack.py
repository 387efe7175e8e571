"""`casebook dev` as a user runs it: one command, the whole stack, Ctrl-C, start again."""

from __future__ import annotations

import hashlib
import json
import mailbox
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sop_templates.registry import SHIPPED_DIR as SHIPPED
from tests.harness import DEMO_DISPUTE
from tests.ports import free_port

SHORT_SLA_S = 10

CASEBOOK = [sys.executable, "-m", "cli.main"]


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port, self.temporal_port, self.smtp_port, self.billing_port = (
            free_port() for _ in range(4)
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *CASEBOOK,
                "dev",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.api_port),
                "--temporal-port",
                str(self.temporal_port),
                "--smtp-port",
                str(self.smtp_port),
                "--billing-port",
                str(self.billing_port),
            ],
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read()  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("casebook dev did not become healthy")

    def interrupt(self) -> int:
        """What Ctrl-C does: SIGINT to the foreground process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def billing_url(self) -> str:
        return f"http://127.0.0.1:{self.billing_port}"

    @property
    def billing(self) -> dict[str, str]:
        """The headers that pass billing's gate: the token `casebook dev` keeps for it."""
        token = (self.data_dir / "billing.token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.api_port, self.temporal_port, self.smtp_port, self.billing_port)

    def ports_closed(self) -> bool:
        return all(_closed(p) for p in self.ports)


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CASEBOOK_")}


def _user_add(data_dir: Path, *args: str) -> dict[str, str]:
    out = subprocess.run(
        [*CASEBOOK, "user", "add", *args, "--data-dir", str(data_dir)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("cb_")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path / "data")
    yield stack
    if stack.process and stack.process.poll() is None:
        stack.interrupt()  # stops its children too; a kill would orphan them


def _wait_task(stack: Stack, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tasks = httpx.get(
            f"{stack.url}/tasks", params={"case_id": case_id, "status": "open"}, headers=headers
        ).json()
        if tasks:
            return tasks[0]
        time.sleep(0.2)
    raise AssertionError(f"no open task on {case_id}")


def _subjects_eventually(stack: Stack, count: int) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        subjects = [m["Subject"] for m in mailbox.Maildir(stack.data_dir / "mail")]
        if len(subjects) >= count or time.monotonic() > deadline:
            return subjects
        time.sleep(0.2)


def _closed_eventually(stack: Stack, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        case = httpx.get(f"{stack.url}/cases/{case_id}", headers=headers).json()
        if case["status"] == "closed" or time.monotonic() > deadline:
            return case
        time.sleep(0.2)


def test_dev_stack_runs_a_dispute_survives_a_restart_and_stops_on_ctrl_c(stack: Stack) -> None:
    stack.start()
    agent = _user_add(
        stack.data_dir, "ana", "--role", "agent", "--vendor", "acme", "--queue", "disputes-tier1"
    )
    dispute = {**DEMO_DISPUTE, "amount": "80.00"}
    case = httpx.post(f"{stack.url}/cases", json=dispute, headers=agent)
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    triage = _wait_task(stack, agent, case_id)
    assert httpx.post(f"{stack.url}/tasks/{triage['id']}/claim", headers=agent).status_code == 200
    # Billing is not open, even on a dev run: only the stack's own processes hold its token.
    assert httpx.get(f"{stack.billing_url}/customers").status_code == 401
    assert (stack.data_dir / "billing.token").stat().st_mode & 0o077 == 0

    # The stack's SMTP server delivers into <data dir>/mail.
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.test", "b@y.test", "hello"
    message.set_content("delivered")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port) as smtp:
        smtp.send_message(message)
    subjects = _subjects_eventually(stack, 2)
    assert sorted(subjects) == [f"We received your dispute {case_id}", "hello"]

    assert stack.interrupt() == 0
    assert stack.ports_closed()

    stack.start()  # same data directory: every case is still there, mid-flight
    detail = httpx.get(f"{stack.url}/cases/{case_id}", headers=agent).json()
    assert detail["tasks"][0]["status"] == "claimed"
    # A worker killed outright is started again by the supervisor; the case goes on.
    os.kill(int((stack.data_dir / "worker.pid").read_text()), signal.SIGKILL)
    # The completion waits for the restarted worker (it imports, connects, then polls).
    done = httpx.post(
        f"{stack.url}/tasks/{triage['id']}/complete",
        json={"outcome": "accept"},
        headers=agent,
        timeout=60,
    )
    assert done.status_code == 200, done.text
    investigate = _wait_task(stack, agent, case_id)
    assert investigate["step"] == "investigate"
    httpx.post(f"{stack.url}/tasks/{investigate['id']}/claim", headers=agent)
    httpx.post(
        f"{stack.url}/tasks/{investigate['id']}/complete", json={"outcome": "valid"}, headers=agent
    )
    final = _closed_eventually(stack, agent, case_id)
    assert final["status"] == "closed" and final["resolution"] == "credited"
    # The credit memo went to the built-in billing service, against its demo invoice.
    invoice = httpx.get(f"{stack.billing_url}/invoices/INV-1001", headers=stack.billing).json()
    assert invoice["amount"] == "12500.00" and invoice["open_balance"] == "12420.00"
    assert f"Your dispute {case_id}: credit memo issued" in _subjects_eventually(stack, 3)
    _audit_from_the_command_line(stack, case_id)
    assert stack.interrupt() == 0
    assert stack.ports_closed()
    said = stack.process.stdout.read().decode()  # type: ignore[union-attr]
    assert "worker exited with -9; restarting" in said and "worker restarted" in said


def test_a_short_sla_breaches_into_the_board_and_the_maildir(stack: Stack, tmp_path: Path) -> None:
    """A step with a seconds-long SLA on the 24x7 calendar, published by `casebook sop publish`."""
    document = yaml.safe_load((SHIPPED / "dispute.v2.yaml").read_text())
    shipped = [yaml.safe_load(p.read_text())["version"] for p in SHIPPED.glob("dispute.v*.yaml")]
    document["version"] = version = max(shipped) + 1  # above every shipped version
    document["steps"][0]["sla"] = {"budget": f"{SHORT_SLA_S}s", "calendar": "24x7"}
    path = tmp_path / f"dispute.v{version}.yaml"
    path.write_text(yaml.safe_dump(document))
    stack.start()
    published = subprocess.run(
        [*CASEBOOK, "sop", "publish", str(path), "--data-dir", str(stack.data_dir)],
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    assert published.returncode == 0, published.stderr
    again = subprocess.run(
        [*CASEBOOK, "sop", "publish", str(path), "--data-dir", str(stack.data_dir)],
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    agent = _user_add(
        stack.data_dir, "ana", "--role", "agent", "--vendor", "acme", "--queue", "disputes-tier1"
    )
    lead = _user_add(
        stack.data_dir,
        "lee",
        "--role",
        "lead",
        "--queue",
        "disputes-leads",
        "--email",
        "lee@o2c.test",
    )
    case = httpx.post(f"{stack.url}/cases", json=DEMO_DISPUTE, headers=agent).json()
    assert case["sop"]["version"] == version
    due = datetime.fromisoformat(case["tasks"][0]["sla_due"])

    deadline = time.monotonic() + SHORT_SLA_S + 30
    board: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not board:
        board = httpx.get(
            f"{stack.url}/escalations", params={"case_id": case["id"]}, headers=lead
        ).json()
        time.sleep(0.2)
    assert board and board[0]["kind"] == "sla_breach", board
    assert (datetime.fromisoformat(board[0]["opened_at"]) - due).total_seconds() < 5

    mails: list[Any] = []
    while time.monotonic() < deadline and not mails:
        mails = [
            m
            for m in mailbox.Maildir(stack.data_dir / "mail")
            if case["id"] in m["Subject"] and "lee@" in m["To"]
        ]
        time.sleep(0.2)
    assert len(mails) == 1 and mails[0]["X-Envelope-To"] == "lee@o2c.test"
    assert stack.interrupt() == 0


def _audit_from_the_command_line(stack: Stack, case_id: str) -> None:
    env = {
        **_clean_env(),
        "CASEBOOK_DATA_DIR": str(stack.data_dir),
        "CASEBOOK_TEMPORAL_ADDRESS": f"127.0.0.1:{stack.temporal_port}",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CASEBOOK, "audit", *args], env=env, capture_output=True, text=True)

    timeline = run("timeline", case_id)
    assert timeline.returncode == 0, timeline.stderr
    assert "task_completed" in timeline.stdout and "by ana" in timeline.stdout
    replay = run("replay", case_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert '"deterministic": true' in replay.stdout
    out = stack.data_dir.parent / "evidence"
    export = run("export", case_id, "--out", str(out))
    assert export.returncode == 0, export.stderr
    verify = run("verify")
    for _ in range(100):  # the archive is written once the case has closed
        if verify.returncode == 0:
            break
        time.sleep(0.2)
        verify = run("verify")
    assert verify.returncode == 0 and "archive intact: 1 cases" in verify.stdout, verify.stderr
    manifest = json.loads((out / case_id / "manifest.json").read_text())
    ocel = json.loads((out / "ocel.json").read_text())
    assert {o["type"] for o in ocel["objects"]} >= {"case", "task", "customer", "invoice"}
    assert manifest["sop"]["registry_hash_matches"] is True
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / case_id / name).read_bytes()).hexdigest() == digest
