"""The default attack on a model it cannot reach: the run says so and still measures.

``attack=analytic`` (the default) needs a dense first layer; on the LeNet (a convolution
first) every one of its rows would be ``not_applicable`` and the run would report no
leakage at all. ``attack.fallback`` puts inverting gradients beside it (a few iterations
here, to keep the test short on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedleak.simulator.runtime.results import read_leakage
from tests.e2e.cli_run import run_fedleak

pytestmark = pytest.mark.slow


def test_default_attack_on_a_cnn_falls_back_to_inverting_gradients(tmp_path: Path) -> None:
    proc, run_dir = run_fedleak(
        tmp_path,
        "dataset=lfw",
        "model=lenet",
        "federation.num_clients=2",
        "federation.rounds=1",
        "pool=inprocess",
        "attack.effort=fast",
        "+attack.params.inverting_gradients.iterations=8",
    )
    assert "attack.fallback ['inverting_gradients'] runs on every attacked update" in proc.stderr
    assert "is set but" not in proc.stderr  # the fallback's settings are not "unused"
    rows = read_leakage(run_dir / "leakage.jsonl")
    by_attack = {a: [r for r in rows if r.attack == a] for a in ("analytic", "inverting_gradients")}
    assert [r.status for r in by_attack["analytic"]] == ["not_applicable"] * 2
    assert "not the model's first layer" in by_attack["analytic"][0].reason
    fallback = by_attack["inverting_gradients"]
    assert [r.status for r in fallback] == ["ok"] * 2
    assert all(r.iterations == 2 for r in fallback)  # 8 at effort fast: a quarter
    warnings = (run_dir / "warnings.json").read_text()
    assert "attack.fallback" in warnings  # kept for the report
