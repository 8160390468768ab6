"""``flwr run`` against Flower's managed local SuperLink, as a new user types it, for tests.

Each :class:`LocalFlower` has its own clean ``FLWR_HOME`` and its own ports (Flower reads
``FLWR_LOCAL_SUPERLINK_HTTP_API_PORT`` and ``FLWR_LOCAL_CONTROL_API_PORT``), so it never
reuses a SuperLink someone else started. The managed SuperLink keeps running after
``flwr run`` returns; :meth:`LocalFlower.stop` ends it and everything it started (the
SuperExec, the simulation process, Ray), found by the sessions of the processes whose
command line names this ``FLWR_HOME``, by process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[3]), cmdline)
    return table


@dataclass
class LocalFlower:
    """A clean ``FLWR_HOME`` and private ports; ``flwr`` commands run from ``cwd``."""

    home: Path
    cwd: Path

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
            "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }

    def flwr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``flwr ARGS``, stdout and stderr together in ``stdout``."""
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )

    def run_status(self, run_id: str) -> str:
        """The SuperLink's status of ``run_id`` (``flwr --stream`` exits 0 on failure too)."""
        proc = self.flwr("ls", "--run-id", run_id, "--format", "json", timeout=60)
        try:
            runs = json.loads(proc.stdout[proc.stdout.index("{") :]).get("runs", [])
        except ValueError:
            return f"unknown ({proc.stdout.strip()[-300:]})"
        return str(runs[0].get("status", "unknown")) if runs else "unknown"

    def started_sessions(self) -> set[int]:
        """Sessions of the managed SuperLink of this ``FLWR_HOME`` and of its descendants."""
        table = _processes()
        roots = {pid for pid, (_, _, cmd) in table.items() if str(self.home) in cmd}
        family, frontier = set(roots), set(roots)
        while frontier:
            frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier} - family
            family |= frontier
        own = os.getsid(0)  # never this test's own session
        return {table[pid][1] for pid in family if table[pid][1] not in (0, 1, own)}

    def stop(self, timeout_s: float = 20.0) -> None:
        """End every process of those sessions: SIGTERM, then SIGKILL what is left."""
        sessions = self.started_sessions()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [pid for pid, (_, sid, _) in _processes().items() if sid in sessions]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and any(
                sid in sessions and not _zombie(pid) for pid, (_, sid, _) in _processes().items()
            ):
                time.sleep(0.5)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
