"""The sweep behind DLG's iteration default: PSNR and time against the L-BFGS budget.

For each kind of input and each seed, one FedSGD client update of an untrained model
(fedleak's own client code, lr 0.1) is attacked by ``dlg`` with every iteration budget
(one gradient-matching evaluation per iteration: no line search). The table holds PSNR after
Hungarian matching and the wall time of the attack, one torch thread::

    python benchmarks/calibrate_dlg.py --iterations 100 300 1000 --seeds 0 1

Measured here (lenet:photos, B=1, seeds 0 and 1, a busy 2-core box): 100 iterations
~22 dB, 300 ~36 dB, 1000 ~53 dB, 3000 ~62 dB; the default is 300 (``attack.effort``
``thorough`` gives 1200).
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

from benchmarks.calibrate_inverting_gradients import update_for  # noqa: E402
from fedleak.attacks import create_attack, execute_attack  # noqa: E402
from fedleak.attacks.types import Reconstruction  # noqa: E402
from fedleak.simulator.metrics.leakage import compute_leakage  # noqa: E402

CPU = torch.device("cpu")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=["lenet:photos"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--iterations", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'case':14} {'B':>2} {'iterations':>10} {'PSNR dB':>8} {'time s':>7}")
    for case in args.cases:
        model_name, kind = case.split(":")
        for size in args.batch_sizes:
            updates = [update_for(model_name, kind, size, s) for s in args.seeds]
            for iterations in args.iterations:
                psnrs, times = [], []
                for seed, (model, update, truth, labels) in zip(args.seeds, updates, strict=True):
                    attack = create_attack("dlg", {"iterations": iterations})
                    start = time.perf_counter()
                    out = execute_attack(
                        attack, model, update, device=torch.device("cpu"), seed=seed
                    )
                    times.append(time.perf_counter() - start)
                    if not isinstance(out, Reconstruction):
                        print(f"{case} B={size} seed {seed}: {out.status}: {out.reason}")
                        return 1
                    psnrs.append(compute_leakage(truth, labels, out.inputs, out.labels).psnr_mean)
                print(
                    f"{case:14} {size:>2} {iterations:>10} {np.mean(psnrs):8.2f} "
                    f"{np.mean(times):7.1f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
