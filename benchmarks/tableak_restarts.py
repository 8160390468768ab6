"""TabLeak's restarts one after another and together: time and what they reconstruct.

TabLeak pools ``restarts`` independent reconstructions (10 at its defaults). Where the model
allows it they run in one vectorised pass (``restarts_together``,
:mod:`fedleak.attacks.batched_restarts`). This script runs TabLeak at its defaults on offline
tables, one CPU thread, both ways, on the models a tabular federation uses (the 6-layer
``fcnn`` of ``benchmarks/tabular.py`` and the default ``mlp``), and prints the wall time of
each and the discrete accuracy and continuous MAE each reconstruction reaches. The two are the
same computation; in float32 their rounding differs, which a long optimisation can amplify::

    python benchmarks/tableak_restarts.py
    python benchmarks/tableak_restarts.py --datasets fair anes96 --batch-sizes 4 8 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.client_step import one_step_update  # noqa: E402
from benchmarks.tables import print_table  # noqa: E402
from fedleak.attacks import Reconstruction, create_attack, execute_attack  # noqa: E402
from fedleak.simulator.data.datasets import ArrayDataset, load_dataset  # noqa: E402
from fedleak.simulator.metrics.modality import measure_leakage  # noqa: E402
from fedleak.simulator.models.architectures import ModelSpec, build_model  # noqa: E402

LR = 0.1
MODELS = ("fcnn", "mlp")


def attack_both_ways(
    train: ArrayDataset, model_name: str, batch: int
) -> tuple[int, list[tuple[float, float, float]]]:
    """The model's parameter count, and (seconds, discrete accuracy, MAE) apart then together."""
    rows = np.random.default_rng(1000 * batch).choice(len(train), batch, replace=False)
    x, y = torch.from_numpy(train.inputs[rows]), torch.from_numpy(train.labels[rows])
    model = build_model(ModelSpec(model_name, train.input_shape, train.num_classes), seed=0)
    update = one_step_update(model, x, y, LR, train.num_classes, input_domain=train.domain)
    results = []
    for together in (False, True):
        attack = create_attack("tableak", {"restarts_together": together})
        start = time.perf_counter()
        outcome = execute_attack(attack, model, update, device=torch.device("cpu"), seed=0)
        seconds = time.perf_counter() - start
        if not isinstance(outcome, Reconstruction):
            raise RuntimeError(f"TabLeak did not run: {outcome.status}: {outcome.reason}")
        leak = measure_leakage(
            x.numpy(), y.numpy(), outcome.inputs, outcome.labels,
            modality="tabular", encoder=train.encoder,
        )  # fmt: skip
        results.append((seconds, leak.discrete_accuracy, leak.continuous_mae))
    return sum(p.numel() for p in model.parameters()), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["fair", "anes96"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = ("data", "model", "params", "B", "apart_s", "together_s", "ratio",
              "acc_apart", "acc_together", "mae_apart", "mae_together")  # fmt: skip
    table = []
    for dataset in args.datasets:
        train = load_dataset(dataset, data_dir=Path(args.data_dir), seed=0, test_fraction=0.2)
        for model_name in MODELS:
            for batch in args.batch_sizes:
                size, ((t_apart, a_apart, m_apart), (t_both, a_both, m_both)) = attack_both_ways(
                    train.train, model_name, batch
                )
                table.append([
                    dataset, model_name, size, batch, f"{t_apart:.1f}", f"{t_both:.1f}",
                    f"{t_both / t_apart:.2f}", f"{a_apart:.3f}", f"{a_both:.3f}",
                    f"{m_apart:.3g}", f"{m_both:.3g}",
                ])  # fmt: skip
    print_table(header, table)


if __name__ == "__main__":
    main()
