"""One ``fedleak run`` in a subprocess, as a user starts it: the shared runner of the e2e tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_fedleak(
    out: Path, *overrides: str, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run ``fedleak run output_dir=<out> <overrides>``; assert it exits 0.

    Returns the finished process (its output) and the run directory it wrote, found by its
    ``config.yaml`` (the directory is named by the run's settings).
    """
    proc = subprocess.run(
        [sys.executable, "-m", "fedleak.simulator.cli", "run", f"output_dir={out}", *overrides],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (c.parent for c in out.glob("*/*/config.yaml"))
    return proc, run_dir
