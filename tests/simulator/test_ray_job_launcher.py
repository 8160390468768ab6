"""Submitting sweep jobs to a Ray job server: the transient "no agent yet" answer is waited out."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from fedleak.simulator.sweep import launch
from fedleak.simulator.sweep.launch import RayJobLauncher

NO_AGENT = (
    "Request failed with status code 500: No available agent to submit job, please try again "
    "later.."
)


class _Status(Enum):
    SUCCEEDED = "SUCCEEDED"


class FakeJobServer:
    """Refuses the first ``refusals`` submissions with ``error``; jobs then succeed."""

    def __init__(self, refusals: int, error: str = NO_AGENT) -> None:
        self.refusals = refusals
        self.error = error
        self.attempts = 0

    def __call__(self, address: str) -> FakeJobServer:  # stands in for the client class
        return self

    def submit_job(self, *, entrypoint: str, metadata: dict[str, Any]) -> str:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise RuntimeError(self.error)
        return "raysubmit_1"

    def get_job_status(self, job_id: str) -> _Status:
        return _Status.SUCCEEDED

    def get_job_logs(self, job_id: str) -> str:
        return "results in somewhere\n"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the launcher's sleeps instead of sleeping; its clock moves by each one."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(launch.time, "sleep", sleep)
    monkeypatch.setattr(launch.time, "monotonic", lambda: sum(slept))
    return slept


def _launcher(monkeypatch: pytest.MonkeyPatch, server: FakeJobServer) -> RayJobLauncher:
    import ray.job_submission

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", server)
    return RayJobLauncher("http://127.0.0.1:8265")


def test_a_job_server_without_an_agent_yet_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sleeps: list[float]
) -> None:
    server = FakeJobServer(refusals=3)
    code = _launcher(monkeypatch, server)(["seed=0"], tmp_path)
    assert code == 0 and server.attempts == 4
    assert sleeps[:3] == [0.5, 1.0, 2.0]  # backing off
    assert (tmp_path / "ray_job_id").read_text() == "raysubmit_1\n"


def test_erroneous_job_server_still_without_an_agent_after_the_wait_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sleeps: list[float]
) -> None:
    server = FakeJobServer(refusals=10**6)
    with pytest.raises(RuntimeError, match="No available agent"):
        _launcher(monkeypatch, server)(["seed=0"], tmp_path)
    assert sum(sleeps) <= RayJobLauncher.agent_wait_s


def test_erroneous_submission_of_another_kind_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sleeps: list[float]
) -> None:
    server = FakeJobServer(refusals=1, error="Request failed with status code 400: bad entrypoint")
    with pytest.raises(RuntimeError, match="bad entrypoint"):
        _launcher(monkeypatch, server)(["seed=0"], tmp_path)
    assert server.attempts == 1 and not sleeps
