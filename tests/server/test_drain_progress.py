"""While the pool drains at the end of a run, progress is reported: done, left, time since."""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from fedleak.attacks.types import AttackFailure, InterceptedUpdate, TrainingHyperparams
from fedleak.server.pipeline import AttackPipeline, AttackPlan, DrainProgress
from fedleak.server.pool import AttackJob, AttackPool, AttackResult
from fedleak.server.recorder import LeakageRecorder
from fedleak.simulator.models.architectures import ModelSpec
from fedleak.simulator.runtime.results import RunPaths, read_leakage


class SlowPool(AttackPool):
    """Finishes one job every ``every_s`` seconds."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.jobs: list[AttackJob] = []
        self.last = time.monotonic()

    def submit(self, job: AttackJob) -> None:
        self.jobs.append(job)

    def poll(self, timeout_s: float = 0.0) -> list[AttackResult]:
        if self.jobs:  # like a real pool: wait up to timeout_s for the next result
            time.sleep(max(0.0, min(timeout_s, self.every_s - (time.monotonic() - self.last))))
        if not self.jobs or time.monotonic() - self.last < self.every_s:
            return []
        self.last = time.monotonic()
        return [AttackResult(self.jobs.pop(0), AttackFailure("failed", "slow on purpose"))]

    def drain(self, timeout_s: float, *, deadline_s: float | None = None) -> list[AttackResult]:
        return [AttackResult(j, AttackFailure("timeout", "gave up")) for j in self.jobs]

    @property
    def pending(self) -> int:
        return len(self.jobs)

    def shutdown(self) -> None:
        self.jobs.clear()


def _update(node: int) -> InterceptedUpdate:
    params = OrderedDict(w=np.full((2, 2), float(node), np.float32))
    hp = TrainingHyperparams("fedsgd", 0.1, 1, 1)
    return InterceptedUpdate(1, node, params, params, 1, hp, (1, 2, 2), 2)


def _drain(tmp_path: Path, every_s: float, heartbeat_s: float) -> list[DrainProgress]:
    paths = RunPaths(tmp_path)
    recorder = LeakageRecorder(paths, None)
    spec = ModelSpec("linear", (1, 2, 2), 2)
    plan = AttackPlan(["analytic"], {}, 0, "cpu")
    pipeline = AttackPipeline(SlowPool(every_s), recorder, plan, spec, poll_interval_s=0.01)
    pipeline.resubmit([_update(n) for n in range(3)], set())
    seen: list[DrainProgress] = []
    pipeline.finish(60, seen.append, every_s=heartbeat_s)
    recorder.close()
    assert len(read_leakage(paths.leakage_jsonl)) == 3
    return seen


def test_each_new_result_is_reported_with_what_is_left(tmp_path: Path) -> None:
    seen = _drain(tmp_path, every_s=1.1, heartbeat_s=60.0)
    assert [(p.done, p.left) for p in seen] == [(1, 2), (2, 1), (3, 0)]
    assert all(p.since_last_result_s < 0.5 for p in seen)
    assert seen[-1].elapsed_s > 3.0
    assert seen[0].line().startswith("draining: 1 attack(s) done, 2 left; last result 0 s ago")


def test_silence_is_reported_too(tmp_path: Path) -> None:
    seen = _drain(tmp_path, every_s=1.5, heartbeat_s=0.4)
    quiet = [p for p in seen if p.done == 0]
    assert len(quiet) >= 2  # nothing finished yet, and the screen still moves
    assert [p.left for p in quiet] == [3] * len(quiet)
    assert quiet[-1].since_last_result_s > quiet[0].since_last_result_s
