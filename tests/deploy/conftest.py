"""Deployment test fixtures: a Docker engine, the fedleak image, and a simulation baseline.

The engine, base image, wheelhouse and image are made once per session and reused by
every test; the engine is stopped (and the firewall restored) at the end of the session
if this session started it. ``pytest -m deploy`` runs the deployment tests alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import dockerhost

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "local/bookworm"
BUILD_CACHE_KEPT = "4GB"  # Docker's build cache left after a session (one image's layers)
EXPERIMENT = ["federation.rounds=2", "federation.num_clients=2", "attack=analytic"]
TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how long the deployment steps took (build, stack up, run)."""
    if TIMINGS:
        terminalreporter.section("deployment timings")
        for step, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{step:<28} {seconds:7.1f} s")


def fedleak(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``fedleak ARGS`` in a subprocess (captured)."""
    return subprocess.run(
        [sys.executable, "-m", "fedleak.simulator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


@pytest.fixture(scope="session")
def simulation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of ``fedleak run`` (simulation) of the deployment tests' experiment."""
    out = tmp_path_factory.mktemp("simulation")
    proc = fedleak("run", *EXPERIMENT, f"output_dir={out}", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (c.parent for c in out.glob("*/*/config.yaml"))  # named by its settings
    return run_dir


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Docker daemon (started here if needed); yields the docker client path."""
    if os.environ.get("FEDLEAK_SKIP_DOCKER") == "1":
        pytest.skip("FEDLEAK_SKIP_DOCKER=1")
    start = time.monotonic()
    engine = dockerhost.DockerEngine(tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    try:
        dockerhost.ensure_packages()
        engine.start()
    except dockerhost.DockerUnavailableError as exc:
        pytest.skip(f"Docker cannot run here: {exc}")
    TIMINGS["docker engine ready"] = time.monotonic() - start
    try:
        yield dockerhost.docker_client()
    finally:
        if engine.process is not None:  # an engine of the tests' own: bound its build cache
            dockerhost.trim_build_cache(BUILD_CACHE_KEPT)
        engine.stop()


@pytest.fixture(scope="session")
def base_image(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A minimal Debian bookworm image (debootstrap), made once and kept by the engine."""
    start = time.monotonic()
    dockerhost.ensure_base_image(BASE_IMAGE, tmp_path_factory.mktemp("base"))
    TIMINGS["base image"] = time.monotonic() - start
    return BASE_IMAGE


@pytest.fixture(scope="session")
def fedleak_image(docker_engine: str, base_image: str) -> str:
    """``fedleak:cpu`` built on the bookworm base (cached by Docker's layers)."""
    start = time.monotonic()
    proc = fedleak(
        "deploy", "build", "--base-image", base_image, env={"FEDLEAK_DOCKER": docker_engine},
        timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    TIMINGS["wheelhouse + image build"] = time.monotonic() - start
    return "fedleak:cpu"
