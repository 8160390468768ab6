"""ResNet-18 (BatchNorm) in a real federation: trains at B=1 and B=4, every attack gives a row.

The iteration budget of the optimisation attacks is cut so the test stays short on a CPU;
the point is that a BatchNorm network's updates (running statistics and the integer step
counter included) train and are attacked without a crash, and that the statistics term is on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedleak.simulator.runtime.results import read_leakage
from tests.e2e.cli_run import run_fedleak

pytestmark = pytest.mark.slow

DELIBERATE = ("ValueError", "NoActiveNeuronError")


@pytest.mark.parametrize("batch", [1, 4])
def test_resnet18_on_lfw_trains_and_every_attack_gives_a_row(tmp_path: Path, batch: int) -> None:
    _, run_dir = run_fedleak(
        tmp_path,
        "dataset=lfw",
        "model=resnet18",
        "federation.num_clients=2",
        "federation.rounds=1",
        f"federation.batch_size={batch}",
        "attack=analytic_ig",
        "attack.names=[analytic,inverting_gradients,idlg]",
        "attack.params.inverting_gradients.iterations=3",
        "+attack.params.idlg.iterations=3",
    )
    rows = read_leakage(run_dir / "leakage.jsonl")
    assert {r.attack for r in rows} == {"analytic", "inverting_gradients", "idlg"}
    assert len(rows) == 2 * 3
    for row in rows:
        assert row.status in ("ok", "not_applicable"), row
        assert not (row.status == "failed" and not row.reason.startswith(DELIBERATE)), row
    optimised = [r for r in rows if r.attack == "inverting_gradients"]
    assert all(r.status == "ok" for r in optimised)
    assert all(r.details.get("batchnorm_prior") == "on" for r in optimised), optimised
