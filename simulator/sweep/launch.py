"""Where a sweep's runs execute: child processes on this machine, or Ray jobs on a cluster.

A launcher runs one ``fedleak run`` from its overrides, with its output in the job directory,
and returns the run's exit code. :func:`subprocess_launcher` starts a child process here;
:class:`RayJobLauncher` submits the same command line to a Ray cluster through Ray's job
submission API (``ray job submit``), so the cluster's scheduler, logs and job list are Ray's
own. Either is called from several threads at once when a sweep runs jobs in parallel.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fedleak

ROOT = Path(fedleak.__file__).resolve().parents[1]
"""The folder holding the ``fedleak`` package (a checkout's root): on a Ray job's PYTHONPATH."""

_ENTRY = "import sys; sys.argv[0] = 'fedleak'; from fedleak.simulator.cli import console_main; "
Launcher = Callable[[list[str], Path], int]
"""Runs one experiment from its overrides, writing its logs into the job directory; exit code."""


_NO_AGENT = "No available agent to submit job"
"""Ray's job server while no node's job agent can take a job yet (it asks to try again)."""


def run_command(overrides: list[str], python: str, verbose: bool) -> list[str]:
    """The command line of one run: ``fedleak run OVERRIDES`` through ``python``."""
    command = [python, "-c", _ENTRY + "console_main()", "run", *overrides]
    return [*command, "--verbose"] if verbose else command


class SubprocessLauncher:
    """Run ``fedleak run`` in a child process; its output goes to ``<job dir>/run.log``."""

    def __init__(self, verbose: bool = False) -> None:
        self._verbose = verbose
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    def __call__(self, overrides: list[str], job_dir: Path) -> int:
        command = run_command(overrides, sys.executable, self._verbose)
        with (job_dir / "run.log").open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            with self._lock:
                self._running.add(proc)
            try:
                return proc.wait()
            finally:
                with self._lock:
                    self._running.discard(proc)

    def stop(self) -> None:
        """Interrupt every run still going (SIGINT: each stops its own Ray and Flower)."""
        with self._lock:
            for proc in self._running:
                proc.send_signal(signal.SIGINT)


def subprocess_launcher(verbose: bool = False) -> SubprocessLauncher:
    """A :class:`SubprocessLauncher` (the default of ``fedleak run -m``)."""
    return SubprocessLauncher(verbose)


class RayJobLauncher:
    """Submit each run as a Ray job to the cluster whose job server is at ``address``.

    Parameters
    ----------
    address : str
        The Ray dashboard / job server, e.g. ``http://head:8265`` (what ``ray job submit
        --address`` takes).
    verbose : bool
        Pass ``--verbose`` to every run.
    python : str
        The interpreter on the cluster's nodes; default: this one (same machine or same image).
    poll_s : float
        How often a job's status is asked for.

    The job runs ``python -c '...console_main()' run OVERRIDES`` with the repository root as
    its working directory and on ``PYTHONPATH``. Its ``output_dir`` (the job directory) must be
    a path every node writes to: this machine's disk for a one-machine cluster, otherwise a
    shared filesystem mounted at the same path. The job's log is copied to ``run.log``.
    """

    TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
    agent_wait_s: float = 120.0
    """How long a submission waits for the job server to have an agent (:meth:`_submit`)."""

    def __init__(
        self,
        address: str,
        verbose: bool = False,
        python: str = sys.executable,
        poll_s: float = 1.0,
    ) -> None:
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError as exc:  # pragma: no cover - ray ships with flwr[simulation]
            raise RuntimeError("--ray-address needs Ray's job submission client") from exc
        try:
            self._client = JobSubmissionClient(address)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            raise ConnectionError(
                f"no Ray job server at {address!r} ({type(exc).__name__}: {exc}); start one "
                "with 'ray start --head --dashboard-host 0.0.0.0' and pass its dashboard "
                "address (default port 8265)"
            ) from exc
        self.address = address
        self._verbose = verbose
        self._python = python
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self.submitted: list[str] = []

    def __call__(self, overrides: list[str], job_dir: Path) -> int:
        # The environment goes on the command line, not into the job's runtime_env: the run
        # sets PYTHONPATH in its own ray.init runtime_env, and Ray refuses to merge the two.
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        command = run_command(overrides, self._python, self._verbose)
        entrypoint = shlex.join(["env", f"PYTHONPATH={pythonpath}", "PYTHONUNBUFFERED=1", *command])
        job_id = self._submit(entrypoint, {"fedleak_job_dir": str(job_dir)})
        self.submitted.append(job_id)
        (job_dir / "ray_job_id").write_text(job_id + "\n", encoding="utf-8")
        status = self._wait(job_id)
        (job_dir / "run.log").write_text(self._client.get_job_logs(job_id), encoding="utf-8")
        return self._exit_code(job_id, status)

    def _submit(self, entrypoint: str, metadata: dict[str, str]) -> str:
        """Submit, retrying while the job server has no agent to run the job yet.

        A freshly started (or busy) head answers ``No available agent to submit job, please
        try again later`` until its node's job agent has registered; that is retried for up
        to :attr:`agent_wait_s`. Any other error, or the same one after that, propagates.
        """
        deadline = time.monotonic() + self.agent_wait_s
        delay = 0.5
        while True:
            try:
                return str(self._client.submit_job(entrypoint=entrypoint, metadata=metadata))
            except RuntimeError as exc:
                waiting = _NO_AGENT in str(exc) and time.monotonic() + delay < deadline
                if not waiting or self._stopping.is_set():
                    raise
            time.sleep(delay)
            delay = min(2 * delay, 8.0)

    def _wait(self, job_id: str) -> str:
        while True:
            status = str(self._client.get_job_status(job_id).value)
            if status in self.TERMINAL:
                return status
            if self._stopping.is_set():
                self._client.stop_job(job_id)
            time.sleep(self._poll_s)

    def _exit_code(self, job_id: str, status: str) -> int:
        if status == "SUCCEEDED":
            return 0
        info: Any = self._client.get_job_info(job_id)
        code = getattr(info, "driver_exit_code", None)
        return int(code) if code else 1

    def stop(self) -> None:
        """Stop every job still running (an interrupted sweep)."""
        self._stopping.set()
