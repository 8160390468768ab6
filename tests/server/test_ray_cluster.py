"""Deployment mode: the pool attaches to a running Ray cluster by address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray_head import private_ray_head

pytestmark = pytest.mark.slow

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


def test_pool_attaches_to_an_existing_cluster() -> None:
    with private_ray_head(num_cpus=1) as head:
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, head.gcs_address],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OUTCOME Reconstruction" in proc.stdout, proc.stdout
    assert "NODES 1" in proc.stdout  # the existing cluster, not a new local one
