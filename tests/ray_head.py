"""A Ray head of a test's own, stopped without touching any other Ray on the host.

``ray stop --force`` kills every Ray process of the machine: a sweep, a benchmark or a
second test session running beside the suite would lose its workers. This head runs with
``--block`` in a new session on free ports and its own temp dir, and is stopped by signalling
its process group, which holds exactly the processes it started.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class RayHead:
    """Where a test's Ray head listens."""

    gcs_address: str
    """``host:port`` for ``ray.init(address=...)``."""
    dashboard_url: str | None
    """The job server's URL, when the head was started with its dashboard."""


@contextmanager
def private_ray_head(
    *,
    num_cpus: int,
    dashboard: bool = False,
    ready: Callable[[RayHead], bool] | None = None,
    timeout_s: float = 240.0,
) -> Iterator[RayHead]:
    """Start a Ray head, wait until it answers, yield it, stop its process group.

    Parameters
    ----------
    num_cpus
        CPUs the head advertises.
    dashboard
        Start the dashboard (Ray's job server) too.
    ready
        Extra readiness probe, retried until it returns True (the GCS port accepting
        connections is always waited for).
    timeout_s
        How long the head may take to answer before the test fails.
    """
    temp = Path(tempfile.mkdtemp(prefix="fl-ray-", dir="/tmp"))  # short: socket paths
    port = free_port()
    dashboard_port = free_port()
    command = [
        RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}", f"--temp-dir={temp}", "--disable-usage-stats",
        f"--include-dashboard={str(dashboard).lower()}",
        f"--dashboard-port={dashboard_port}", "--dashboard-host=127.0.0.1",
        f"--ray-client-server-port={free_port()}",
    ]  # fmt: skip
    head_info = RayHead(
        gcs_address=f"127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}" if dashboard else None,
    )
    log_path = temp / "head.log"
    with log_path.open("w") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not (_accepts(port) and (ready is None or ready(head_info))):
            assert head.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(2)
        yield head_info
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops every process it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
