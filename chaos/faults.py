"""The faults a run injects into its own `casebook dev` stack, and the record of each.

Each part's process is found through the pid file the supervisor keeps in the data
directory (`<part>.pid`); the supervisor starts a killed part again (with backoff), which
is what an operator's stack does. Only processes of this run's stack are ever signalled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

COME_BACK_TIMEOUT_S = 90.0


@dataclass
class Fault:
    name: str
    detail: str
    at_s: float  # seconds since the run started
    back_after_s: float | None = None  # when the part answered again (None: it did not)


@dataclass
class Faults:
    """Injects faults into the stack whose data directory is `data_dir`, and logs them."""

    data_dir: Path
    started: float = field(default_factory=time.monotonic)
    log: list[Fault] = field(default_factory=list)

    def _pid(self, part: str) -> int:
        pid = int((self.data_dir / f"{part}.pid").read_text())
        # A pid file left by a process that died could name another process by now: only
        # one that names this data directory (its command line or environment) is ours.
        ours = str(self.data_dir).encode()
        proc = Path(f"/proc/{pid}")
        if (
            ours
            not in proc.joinpath("cmdline").read_bytes() + proc.joinpath("environ").read_bytes()
        ):
            raise RuntimeError(f"{part} pid {pid} is not this stack's")
        return pid

    def _record(self, name: str, detail: str) -> Fault:
        fault = Fault(name, detail, time.monotonic() - self.started)
        self.log.append(fault)
        return fault

    async def kill(self, part: str, port: int) -> Fault:
        """SIGKILL a part; wait until the supervisor's new process listens again."""
        pid = self._pid(part)
        os.kill(pid, signal.SIGKILL)
        fault = self._record(f"SIGKILL {part}", f"pid {pid}; the supervisor starts it again")
        started = time.monotonic()
        if await _listening_again(self.data_dir / f"{part}.pid", pid, port):
            fault.back_after_s = time.monotonic() - started
        return fault

    async def kill_worker(self) -> Fault:
        """SIGKILL the worker (no port: back when the supervisor wrote a new pid)."""
        pid = self._pid("worker")
        os.kill(pid, signal.SIGKILL)
        fault = self._record("SIGKILL worker", f"pid {pid}, mid-flight")
        started = time.monotonic()
        if await _new_pid(self.data_dir / "worker.pid", pid):
            fault.back_after_s = time.monotonic() - started
        return fault

    async def freeze(self, part: str, seconds: float) -> Fault:
        """SIGSTOP a part for `seconds`: it accepts connections and never answers (a hung
        service, the harder outage: callers must time out), then SIGCONT."""
        pid = self._pid(part)
        os.kill(pid, signal.SIGSTOP)
        fault = self._record(f"freeze {part}", f"pid {pid} SIGSTOP for {seconds:.0f}s")
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        fault.back_after_s = seconds
        return fault

    async def lock_database(self, database: Path, seconds: float) -> Fault:
        """The read model's SQLite database unwritable for `seconds`: an exclusive lock held
        (in WAL mode readers still read; writers wait up to the 30 s busy timeout, then
        fail). Root ignores file modes, so a lock is the honest way to make it unreachable."""
        fault = self._record(
            "read-model database locked", f"BEGIN EXCLUSIVE on {database.name} for {seconds:.0f}s"
        )
        await asyncio.to_thread(_hold_exclusive_lock, database, seconds)
        fault.back_after_s = seconds
        return fault


def _hold_exclusive_lock(database: Path, seconds: float) -> None:
    connection = sqlite3.connect(database, timeout=60, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


async def _new_pid(pid_file: Path, old: int) -> bool:
    deadline = time.monotonic() + COME_BACK_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if int(pid_file.read_text()) != old:
                return True
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.2)
    return False


async def _listening_again(pid_file: Path, old: int, port: int) -> bool:
    if not await _new_pid(pid_file, old):
        return False
    deadline = time.monotonic() + COME_BACK_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return True
    return False
