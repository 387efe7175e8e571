"""The fault run in its tiny size: `python -m chaos --size tiny` passes every check.

It starts its own `casebook dev` (Temporal dev server, worker, API, built-in billing, SMTP
into a Maildir), kills and freezes its parts while agents work disputes over HTTP, and
exits non-zero when a check fails (a case stuck, a breach with no escalation, a credit memo
twice, an email lost, the read model unequal to Temporal after the reconciler).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHAOS_TIMEOUT_S = 420
CHECKS = (
    "every case reached its end",
    "every SLA breach escalated",
    "billing writes exactly once, ledger balances",
    "emails delivered, one Message-ID each",
    "read model equals Temporal",
)
FAULTS = ("SIGKILL worker", "SIGKILL temporal", "SIGKILL mail", "freeze billing", "locked")


def test_tiny_fault_run_passes_every_check() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "chaos", "--size", "tiny"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CHAOS_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    rows = {line.split("  ")[0].strip(): line for line in run.stdout.splitlines()}
    for check in CHECKS:
        assert check in rows and " pass " in rows[check], run.stdout
    for fault in FAULTS:
        assert fault in run.stdout, run.stdout
