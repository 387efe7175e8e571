"""`casebook dev`: the whole stack on localhost, started and stopped as one."""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# How long each part may take to start listening before the stack gives up.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# A part that dies is started again after a pause that doubles up to a cap; one that stayed
# up this long counts as healthy again and its next restart comes quickly.
RESTART_FIRST_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
HEALTHY_AFTER_S = 60.0
# The billing service's bearer token, kept beside its ledger in the data directory.
BILLING_TOKEN_FILE = "billing.token"


@dataclass(frozen=True)
class Ports:
    api: int
    temporal: int
    smtp: int
    billing: int


@dataclass
class Restarts:
    """When a dead part is started again, and how long the pause after its next death is."""

    count: int = 0
    delay_s: float = RESTART_FIRST_DELAY_S
    due_at: float | None = None  # monotonic instant of the pending restart
    started_at: float = 0.0


@dataclass
class DevStack:
    data_dir: Path
    ports: Ports
    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    # Each part's command and environment, to start it again the same way.
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    restarts: dict[str, Restarts] = field(default_factory=dict)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Billing runs with a token even on localhost: any local process could otherwise
        # issue credit memos. Only billing and the processes that call it get it.
        token = billing_token(self.data_dir)
        casebook_env = {**self.env, "CASEBOOK_BILLING_TOKEN": token}
        self._spawn("temporal", temporal_command(self.data_dir, self.ports.temporal))
        wait_for_port("temporal", self.ports.temporal, self.processes[-1][1])
        self._spawn("mail", self._casebook("mailserver"))
        wait_for_port("mail", self.ports.smtp, self.processes[-1][1])
        billing = billing_command(self.data_dir, self.ports.billing)
        self._spawn("billing", billing, {**self.env, "BILLING_TOKEN": token})
        wait_for_port("billing", self.ports.billing, self.processes[-1][1])
        self._spawn("worker", self._casebook("worker"), casebook_env)
        self._spawn("api", self._casebook("api"), casebook_env)
        wait_for_port("api", self.ports.api, self.processes[-1][1])

    def _casebook(self, command: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", command]

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.commands[name] = (command, self.env if env is None else env)
        self.restarts.setdefault(name, Restarts())
        self.processes.append((name, self._popen(name)))

    def _popen(self, name: str) -> subprocess.Popen[bytes]:
        command, env = self.commands[name]
        log = (self.data_dir / f"{name}.log").open("ab")
        # Own session: Ctrl-C reaches only the supervisor, which stops children in order.
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        # Operators (and fault drills) find each part's process here.
        (self.data_dir / f"{name}.pid").write_text(f"{process.pid}\n")
        self.restarts[name].started_at = time.monotonic()
        return process

    def wait(self) -> int:
        """Block until a signal arrives, starting again any part that dies; then stop all."""
        stopping = {"now": False}

        def _stop(_signum: int, _frame: object) -> None:
            stopping["now"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stopping["now"]:
            self.supervise(time.monotonic())
            time.sleep(0.3)
        self.stop()
        return 0

    def supervise(self, now: float) -> None:
        """One round: schedule a restart for each part found dead, start those that are due.

        A dead part must not take the others down: a worker killed mid-case, or Temporal
        itself, comes back on the same data directory and the cases go on.
        """
        for index, (name, process) in enumerate(self.processes):
            state = self.restarts[name]
            if process.poll() is None:
                continue
            if state.due_at is None:
                if now - state.started_at >= HEALTHY_AFTER_S:
                    state.delay_s = RESTART_FIRST_DELAY_S
                state.due_at = now + state.delay_s
                _say(
                    f"{name} exited with {process.returncode}; restarting in "
                    f"{state.delay_s:.0f}s (see {self.data_dir / (name + '.log')})"
                )
            elif now >= state.due_at:
                state.count += 1
                state.due_at = None
                state.delay_s = min(state.delay_s * 2, RESTART_MAX_DELAY_S)
                self.processes[index] = (name, self._popen(name))
                _say(f"{name} restarted (restart {state.count})")

    def stop(self) -> None:
        """Stop in reverse order of start: API and worker first, Temporal last."""
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def _say(message: str) -> None:
    print(f"casebook dev: {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """On Linux, a child gets SIGTERM if the supervisor itself is killed (no orphans)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


def temporal_command(data_dir: Path, port: int) -> list[str]:
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    return [
        binary,
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(port + 1000),
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
    ]


def billing_command(data_dir: Path, port: int) -> list[str]:
    """The built-in billing service, its ledger in its own database beside Casebook's."""
    ledger = f"sqlite:///{data_dir / 'billing.db'}"
    return [sys.executable, "-m", "billing.service", "serve", "--db", ledger, "--port", str(port)]


def billing_token(data_dir: Path) -> str:
    """The dev ledger's token: made once per data directory, readable by its owner only.

    Kept (not made per run) so the ledger and whoever inspects it (`curl -H "Authorization:
    Bearer $(cat <data dir>/billing.token)"`) agree across restarts.
    """
    path = data_dir / BILLING_TOKEN_FILE
    if path.exists() and (kept := path.read_text().strip()):
        return kept
    token = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    return token


def wait_for_port(name: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} while starting")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not listen on port {port} within {START_TIMEOUT_S:.0f}s")


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env
