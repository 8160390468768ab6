"""Tiny real sweeps: 2 settings x 2 seeds of one round, each a whole federation, 2 at a time
on this machine; and 2 seeds submitted as Ray jobs to a Ray head started by the test."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedleak.simulator.cli import main
from fedleak.simulator.sweep.summary import SUMMARY_PNG, SUMMARY_TXT, SWEEP_CSV
from tests.ray_head import RayHead, private_ray_head

pytestmark = pytest.mark.slow


def test_multirun_writes_one_run_per_combination_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [
        f"output_dir={tmp_path}",
        "defense=none,dp",
        "defense.dp.noise=0.1",
        "seed=0,1",
        "federation.rounds=1",
        "federation.num_clients=2",
        "attack=analytic",
    ]
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fedleak.simulator.cli", "run", "-m", "--jobs", "2", *overrides],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep_dir,) = tmp_path.glob("*/sweep-*")  # named after its first job
    assert "4 runs, 2 at a time (here)" in proc.stdout
    jobs = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("job-*/job.json"))]
    assert sum(j["elapsed_s"] for j in jobs) > 1.2 * wall  # two federations at a time
    assert "leakage_psnr" in proc.stdout and "defense=dp defense.dp.noise=0.1" in proc.stdout

    with (sweep_dir / SWEEP_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["setting"], r["seed"], r["status"]) for r in rows] == [
        ("defense=none", "0", "ok"),
        ("defense=none", "1", "ok"),
        ("defense=dp defense.dp.noise=0.1", "0", "ok"),
        ("defense=dp defense.dp.noise=0.1", "1", "ok"),
    ]
    for row in rows:
        assert (sweep_dir / row["run_dir"] / "leakage.jsonl").is_file()
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert row["best_attack"] == "analytic"
    none_psnr = [float(r["leakage_psnr"]) for r in rows[:2]]
    dp_psnr = [float(r["leakage_psnr"]) for r in rows[2:]]
    assert min(none_psnr) >= 60.0 > max(dp_psnr)  # exact without DP, destroyed with it
    assert [r["epsilon"] for r in rows[:2]] == ["", ""]
    assert all(float(r["epsilon"]) > 0 for r in rows[2:])

    text = (sweep_dir / SUMMARY_TXT).read_text()
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["setting", "seeds", "failed", "epsilon"]
    assert lines[1].startswith("defense=none ") and lines[2].startswith("defense=dp ")
    assert (sweep_dir / SUMMARY_PNG).stat().st_size > 1000

    (sweep_dir / SUMMARY_TXT).unlink()
    capsys.readouterr()
    assert main(["sweep-report", str(sweep_dir)]) == 0
    assert capsys.readouterr().out == text


def _ray_job_server_deps() -> str | None:
    """Why a Ray head here cannot serve jobs (``ray[default]`` missing), or ``None``."""
    import ray._private.utils

    error = ray._private.utils.get_dashboard_dependency_error()
    return None if error is None else f"Ray's job server needs ray[default]: {error}"


def _job_server_answers(head: RayHead) -> bool:
    from ray.job_submission import JobSubmissionClient

    try:
        JobSubmissionClient(head.dashboard_url)
    except Exception:
        return False
    return True


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A Ray head of this test's own with its job server; yields the job server URL."""
    if (missing := _ray_job_server_deps()) is not None:
        pytest.skip(missing)
    with private_ray_head(num_cpus=4, dashboard=True, ready=_job_server_answers) as head:
        assert head.dashboard_url is not None
        yield head.dashboard_url


def test_multirun_submits_its_jobs_to_a_ray_cluster(ray_head: str, tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    overrides = [
        f"output_dir={tmp_path}",
        "seed=0,1",
        "federation.rounds=1",
        "federation.num_clients=2",
        "attack=analytic",
        "pool=inprocess",
    ]
    command = [sys.executable, "-m", "fedleak.simulator.cli", "run", "-m", "--jobs", "2"]
    proc = subprocess.run(
        [*command, "--ray-address", ray_head, *overrides],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"2 runs, 2 at a time (Ray jobs at {ray_head})" in proc.stdout
    (sweep_dir,) = tmp_path.glob("*/sweep-*")  # named after its first job
    with (sweep_dir / SWEEP_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["seed"], r["status"], r["best_attack"]) for r in rows] == [
        ("0", "ok", "analytic"),
        ("1", "ok", "analytic"),
    ]
    assert all(float(r["leakage_psnr"]) >= 60.0 for r in rows)
    client = JobSubmissionClient(ray_head)
    statuses = {job.submission_id: str(job.status.value) for job in client.list_jobs()}
    for job_dir in sorted(sweep_dir.glob("job-*")):
        job_id = (job_dir / "ray_job_id").read_text().strip()
        assert statuses[job_id] == "SUCCEEDED"  # the cluster ran it, as Ray's own job list says
        assert "results in" in (job_dir / "run.log").read_text()
