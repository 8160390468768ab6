"""What the server intercepted, kept on disk so attacks pending at a crash can run again."""

from __future__ import annotations

import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fedleak.attacks.types import InterceptedUpdate, TrainingHyperparams


def _save_npz(target: Path, arrays: dict[str, np.ndarray]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp.npz")
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, target)


class UpdateStore:
    """``<run>/updates/round_NNNN/``: the round's global model once, each client's reply."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _round_dir(self, server_round: int) -> Path:
        return self.root / f"round_{server_round:04d}"

    def save(self, update: InterceptedUpdate) -> None:
        """Persist one update (the global model only once per round)."""
        folder = self._round_dir(update.server_round)
        if not (folder / "global.npz").is_file():
            _save_npz(folder / "global.npz", dict(update.global_params))
        _save_npz(folder / f"node_{update.node_id}.npz", dict(update.client_params))
        meta = {
            "num_examples": update.num_examples,
            "hyperparams": asdict(update.hyperparams),
            "input_shape": list(update.input_shape),
            "num_classes": update.num_classes,
        }
        (folder / f"node_{update.node_id}.json").write_text(json.dumps(meta), encoding="utf-8")

    def load_round(self, server_round: int) -> list[InterceptedUpdate]:
        """Every update saved for ``server_round`` (labels are never stored)."""
        folder = self._round_dir(server_round)
        if not (folder / "global.npz").is_file():
            return []
        with np.load(folder / "global.npz") as data:
            global_params = OrderedDict((k, data[k]) for k in data.files)
        updates = []
        for meta_file in sorted(folder.glob("node_*.json")):
            node_id = int(meta_file.stem.removeprefix("node_"))
            npz = meta_file.with_suffix(".npz")
            if not npz.is_file():
                continue
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            with np.load(npz) as data:
                client_params = OrderedDict((k, data[k]) for k in global_params)
            updates.append(
                InterceptedUpdate(
                    server_round=server_round,
                    node_id=node_id,
                    global_params=global_params,
                    client_params=client_params,
                    num_examples=int(meta["num_examples"]),
                    hyperparams=TrainingHyperparams(**meta["hyperparams"]),
                    input_shape=tuple(meta["input_shape"]),
                    num_classes=int(meta["num_classes"]),
                )
            )
        return updates
