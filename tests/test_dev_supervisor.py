"""`casebook dev`'s supervisor: a dead part starts again, with backoff; the rest runs on."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from devstack.supervisor import (
    HEALTHY_AFTER_S,
    RESTART_FIRST_DELAY_S,
    DevStack,
    Ports,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def _stack(tmp_path: Path) -> DevStack:
    return DevStack(tmp_path, Ports(api=0, temporal=0, smtp=0, billing=0), dict(os.environ))


def _dead(stack: DevStack, name: str) -> None:
    process = dict(stack.processes)[name]
    process.wait(timeout=30)


def test_a_dead_part_restarts_after_a_growing_pause_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    stack = _stack(tmp_path)
    try:
        stack._spawn("sleeper", SLEEPER)
        stack._spawn("crasher", CRASHER)
        sleeper_pid = dict(stack.processes)["sleeper"].pid
        first_pid = dict(stack.processes)["crasher"].pid
        assert (tmp_path / "crasher.pid").read_text().strip() == str(first_pid)
        _dead(stack, "crasher")

        now = time.monotonic()
        stack.supervise(now)  # found dead: a restart is scheduled, not done at once
        assert stack.restarts["crasher"].due_at == now + RESTART_FIRST_DELAY_S
        stack.supervise(now + RESTART_FIRST_DELAY_S / 2)
        assert dict(stack.processes)["crasher"].pid == first_pid
        stack.supervise(now + RESTART_FIRST_DELAY_S)
        second_pid = dict(stack.processes)["crasher"].pid
        assert second_pid != first_pid and stack.restarts["crasher"].count == 1
        assert (tmp_path / "crasher.pid").read_text().strip() == str(second_pid)

        _dead(stack, "crasher")  # dies again at once: the next pause is twice as long
        now = time.monotonic()
        stack.supervise(now)
        assert stack.restarts["crasher"].due_at == now + 2 * RESTART_FIRST_DELAY_S

        assert dict(stack.processes)["sleeper"].pid == sleeper_pid
        assert dict(stack.processes)["sleeper"].poll() is None
    finally:
        stack.stop()


def test_a_part_that_stayed_up_restarts_quickly_again(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    try:
        stack._spawn("crasher", CRASHER)
        stack.restarts["crasher"].delay_s = 16.0  # after several quick deaths
        _dead(stack, "crasher")
        later = stack.restarts["crasher"].started_at + HEALTHY_AFTER_S
        stack.supervise(later)
        assert stack.restarts["crasher"].due_at == later + RESTART_FIRST_DELAY_S
    finally:
        stack.stop()
