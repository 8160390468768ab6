"""Ray's node startup is retried when a loaded machine makes it time out, and only then."""

from __future__ import annotations

from typing import Any

import pytest

from fedleak.simulator.runtime.simulation import start_ray

TIMEOUT = (
    "The current node timed out during startup. This could happen because some of the raylet "
    "failed to startup or the GCS has become overloaded."
)


class FakeRay:
    """``ray.init`` raising the given errors in turn, then succeeding."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls: list[dict[str, Any]] = []
        self.shutdowns = 0

    def init(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_startup_timeout_starts_ray_again(capsys: pytest.CaptureFixture[str]) -> None:
    ray = FakeRay([Exception(TIMEOUT)])
    start_ray(ray, num_cpus=2)
    assert ray.calls == [{"num_cpus": 2}, {"num_cpus": 2}] and ray.shutdowns == 1
    assert "Ray's node startup timed out (attempt 1 of 3); starting it again" in (
        capsys.readouterr().err
    )


def test_erroneous_ray_start_is_raised_after_the_last_attempt() -> None:
    ray = FakeRay([Exception(TIMEOUT)] * 3)
    with pytest.raises(Exception, match="timed out during startup"):
        start_ray(ray, attempts=3)
    assert len(ray.calls) == 3 and ray.shutdowns == 2


def test_erroneous_ray_start_other_than_a_timeout_is_not_retried() -> None:
    ray = FakeRay([ValueError("bad resources")])
    with pytest.raises(ValueError, match="bad resources"):
        start_ray(ray)
    assert len(ray.calls) == 1 and ray.shutdowns == 0
