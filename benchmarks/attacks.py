"""Quality and time of every registered attack on real client updates of the offline data sets.

Each case is one client of a federation: a global model (seeded, untrained), a partition of a
data set, and the recipe the server configured. The client trains exactly as fedleak's
clients do (``fedleak.clients.training.train_locally``: one FedSGD step, or K FedAvg steps); the
attack sees only the resulting :class:`~fedleak.attacks.types.InterceptedUpdate` (plus the true
labels when it ``requires`` them); the leakage is measured against the samples the client used with
``fedleak.simulator.metrics.leakage.compute_leakage``. Every attack runs on every case; an attack
whose preconditions do not hold prints ``n/a: <reason>``.

    python benchmarks/attacks.py                         # every attack, every case, CPU
    python benchmarks/attacks.py --iterations 500        # longer optimisation attacks
    python benchmarks/attacks.py --attacks analytic inverting_gradients --cases mlp-digits-b1
    python benchmarks/attacks.py --param inverting_gradients.restarts=4 --device cuda
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.client_step import client_step  # noqa: E402
from fedleak import attacks  # noqa: E402
from fedleak.attacks import (  # noqa: E402
    AttackFailure,
    Disclosure,
    InterceptedUpdate,
    Reconstruction,
    TrainingHyperparams,
    create_attack,
    execute_attack,
)
from fedleak.attacks.analytic import recover_linear_input  # noqa: E402
from fedleak.simulator.data.datasets import DatasetSplits, load_dataset  # noqa: E402
from fedleak.simulator.metrics.leakage import compute_leakage  # noqa: E402
from fedleak.simulator.models.architectures import ModelSpec, build_model  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One client update to attack.

    Attributes
    ----------
    model, dataset : str
        Registry names (``fedleak.simulator.models.architectures``,
        ``fedleak.simulator.data.datasets``).
    batch_size : int
        B.
    mode : {"fedsgd", "fedavg"}
        The recipe; ``fedavg`` runs ``local_steps`` SGD steps.
    local_steps : int
        K (1 for FedSGD).
    lr : float
        The clients' learning rate.
    params : dict[str, Any]
        Attack settings for this case, applied to every attack whose config has the field
        (e.g. enough restarts to search the K! label orders of a FedAvg update).
    """

    model: str
    dataset: str
    batch_size: int
    mode: str = "fedsgd"
    local_steps: int = 1
    lr: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        recipe = "" if self.mode == "fedsgd" else f"-fedavg{self.local_steps}"
        return f"{self.model}-{self.dataset}-b{self.batch_size}{recipe}"


CASES: tuple[Case, ...] = (
    Case("mlp", "digits", 1),  # Phong et al. 2018's network: the analytic attack is exact
    Case("cnn", "digits", 1),  # the first Linear sits after two convs: features only
    Case("lenet", "digits", 1),  # DLG's LeNet (sigmoid)
    Case("lenet", "lfw", 1),
    Case("mlp", "digits", 4),  # a small batch through dense layers (direct batch inversion)
    Case("fcnn", "digits", 8),  # SPEAR's fully connected network, a batch
    # FedAvg, K=3 local steps of B=1: enough restarts to try the 3! label-to-step orders
    Case("mlp", "digits", 1, "fedavg", 3, 0.05, {"restarts": 6}),
    Case("cnn", "digits", 1, "fedavg", 3, 0.05, {"restarts": 6}),
)

HEADER = (
    "attack",
    "model",
    "data",
    "B",
    "mode",
    "status",
    "psnr_mean",
    "psnr_min",
    "ssim",
    "avd",
    "label_acc",
    "iters",
    "time_s",
    "device",
)


def client_update(
    case: Case, splits: DatasetSplits, seed: int, partition_size: int
) -> tuple[torch.nn.Module, InterceptedUpdate, np.ndarray, np.ndarray]:
    """Global model, the update a real client sends, and the samples (and labels) it used."""
    train = splits.train
    spec = ModelSpec(case.model, tuple(int(s) for s in train.input_shape), train.num_classes)
    model = build_model(spec, seed=seed)
    model.train()
    rng = np.random.default_rng(seed)
    part = rng.choice(len(train), size=min(partition_size, len(train)), replace=False)
    hp = TrainingHyperparams(
        case.mode,  # type: ignore[arg-type]
        case.lr,
        case.batch_size,
        1 if case.mode == "fedsgd" else case.local_steps,
    )
    step = client_step(
        model,
        train.inputs[part],
        train.labels[part],
        hp,
        num_classes=spec.num_classes,
        rng=rng,
        node_id=seed,
    )
    return model, step.update, step.inputs, step.labels


def attack_params(
    name: str, case: Case, overrides: dict[str, dict[str, Any]], iterations: int | None
) -> dict[str, Any]:
    """The case's settings and ``--iterations`` where the attack has them, then ``--param``."""
    fields = {f.name for f in dataclasses.fields(attacks.attack_class(name).config_class)}
    params = {k: v for k, v in case.params.items() if k in fields}
    if iterations is not None and "iterations" in fields:
        params["iterations"] = iterations
    params.update(overrides.get(name, {}))
    return params


def fmt(value: float, digits: int = 1) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def run_case(
    name: str,
    case: Case,
    splits: DatasetSplits,
    params: dict[str, Any],
    *,
    device: torch.device,
    repeats: int,
    partition_size: int,
) -> tuple[object, ...]:
    """Attack ``repeats`` client updates of ``case`` with ``name``; one table row."""
    cls = attacks.attack_class(name)
    psnrs: list[float] = []
    ssims, avds, accs, times = [], [], [], []
    iterations = 0
    for repeat in range(repeats):
        model, update, truth_x, truth_y = client_update(case, splits, repeat, partition_size)
        if Disclosure.LABELS in cls.requires:
            update = dataclasses.replace(update, disclosed_labels=truth_y)
        model.to(device)
        outcome = execute_attack(
            create_attack(name, params), model, update, device=device, seed=repeat
        )
        if isinstance(outcome, AttackFailure):
            status = "n/a" if outcome.status == "not_applicable" else outcome.status
            return (
                name,
                case.model,
                case.dataset,
                case.batch_size,
                mode(case),
                f"{status}: {outcome.reason}",
            )
        assert isinstance(outcome, Reconstruction)
        leakage = compute_leakage(truth_x, truth_y, outcome.inputs, outcome.labels)
        psnrs.extend(leakage.psnr_per_sample)
        ssims.append(leakage.ssim_mean)
        avds.append(leakage.avd_mean)
        accs.append(leakage.label_accuracy)
        times.append(outcome.wall_time_s)
        iterations = outcome.iterations
    return (
        name,
        case.model,
        case.dataset,
        case.batch_size,
        mode(case),
        "ok",
        fmt(float(np.mean(psnrs))),
        fmt(float(np.min(psnrs))),
        fmt(float(np.mean(ssims)), 3),
        fmt(float(np.mean(avds)), 3),
        fmt(float(np.mean(accs)), 2),
        iterations,
        fmt(float(np.mean(times)), 2),
        str(device),
    )


def mode(case: Case) -> str:
    return "fedsgd" if case.mode == "fedsgd" else f"fedavg K={case.local_steps}"


def feature_rows(
    cases: Sequence[Case], splits: dict[str, DatasetSplits], partition_size: int
) -> list[tuple[object, ...]]:
    """Seed 001 §3: the first Linear layer's input features, wherever the layer sits."""
    rows: list[tuple[object, ...]] = []
    for case in cases:
        if case.batch_size != 1 or case.mode != "fedsgd":
            continue
        model, update, truth_x, _ = client_update(case, splits[case.dataset], 0, partition_size)
        try:
            recovery = recover_linear_input(model, update)
        except ValueError as exc:
            rows.append((case.model, case.dataset, "-", "-", "-", f"n/a: {exc}"))
            continue
        seen: list[torch.Tensor] = []
        hook = model.get_submodule(recovery.layer).register_forward_hook(
            lambda _m, args, _o, seen=seen: seen.append(args[0].detach())
        )
        with torch.no_grad():
            model(torch.from_numpy(truth_x))
        hook.remove()
        truth = seen[0].numpy()
        rel = float(np.linalg.norm(recovery.features - truth) / np.linalg.norm(truth))
        rows.append(
            (
                case.model,
                case.dataset,
                recovery.layer,
                truth.shape[1],
                ",".join(map(str, recovery.neurons)),
                f"{rel:.2e}",
            )
        )
    return rows


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned plain-text table; a short row's last cell (an n/a reason) runs on."""
    cells = [[str(h) for h in header]] + [[str(v) for v in row] for row in rows]
    full = [line for line in cells if len(line) == len(header)]
    widths = [max(len(line[i]) for line in full) for i in range(len(header))]
    for line in cells:
        padded = [text.ljust(width) for text, width in zip(line[:-1], widths, strict=False)]
        print("  ".join([*padded, line[-1]]))


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``attack.key=value`` strings into ``{attack: {key: value}}`` (values as Python literals)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, _, raw = item.partition("=")
        attack, _, key = target.partition(".")
        if not (attack and key and raw):
            raise SystemExit(f"--param {item!r}: expected ATTACK.KEY=VALUE")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out.setdefault(attack, {})[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--attacks", nargs="*", default=None, help="default: every registered attack"
    )
    parser.add_argument(
        "--cases", nargs="*", default=None, help=f"default: all of {[c.name for c in CASES]}"
    )
    parser.add_argument(
        "--iterations", type=int, default=None, help="for attacks with an iterations setting"
    )
    parser.add_argument("--param", action="append", default=[], metavar="ATTACK.KEY=VALUE")
    parser.add_argument("--repeats", type=int, default=1, help="client updates per case")
    parser.add_argument("--partition-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU visible")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    names = args.attacks or attacks.available_attacks()
    unknown = sorted(set(names) - set(attacks.available_attacks()))
    if unknown:
        raise SystemExit(f"unknown attack(s) {unknown}; available: {attacks.available_attacks()}")
    cases = [c for c in CASES if args.cases is None or c.name in args.cases]
    overrides = parse_overrides(args.param)
    splits = {
        name: load_dataset(name, data_dir=ROOT / "data", seed=0, test_fraction=0.2)
        for name in sorted({c.dataset for c in cases})
    }

    rows = []
    for name in names:
        for case in cases:
            params = attack_params(name, case, overrides, args.iterations)
            row = run_case(
                name,
                case,
                splits[case.dataset],
                params,
                device=device,
                repeats=args.repeats,
                partition_size=args.partition_size,
            )
            print("  ".join(map(str, row)), file=sys.stderr, flush=True)  # progress
            rows.append(row)
    print(f"# attacks on real client updates ({args.repeats} per case, torch {torch.__version__})")
    print_table(HEADER, rows)
    print()
    print("# analytic formula on the first Linear layer with bias: its input features (B=1)")
    print_table(
        ("model", "data", "layer", "features", "neurons", "rel_error"),
        feature_rows(cases, splits, args.partition_size),
    )


if __name__ == "__main__":
    main()
