"""Deployment mode: the pool attaches to a running Ray cluster by address."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
CLIENT = """
import sys
from fedleak.simulator.config.schema import PoolConfig
from fedleak.server.pool import create_pool
from tests.server.test_pool import _job
pool = create_pool(PoolConfig(backend="ray", workers=1, address=sys.argv[1]))
(result,) = pool.drain(120) if pool.submit(_job("analytic")) is None else []
import ray
print("NODES", len(ray.nodes()), "OUTCOME", type(result.outcome).__name__, "WORKER", result.worker)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pool_attaches_to_an_existing_cluster() -> None:
    port = _free_port()
    # Ray's unix sockets live under --temp-dir; pytest's tmp paths are too long for them
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    start = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "OUTCOME Reconstruction" in proc.stdout, proc.stdout
        assert "NODES 1" in proc.stdout  # the existing cluster, not a new local one
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)
