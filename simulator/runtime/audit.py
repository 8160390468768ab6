"""The audit store: the exact samples each client trained on, keyed by (run, round, node).

Clients write here in evaluation mode; only the auditor reads it. Ground truth never
travels in a Flower message, and nothing in ``attacks/`` can reach this module.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GroundTruth:
    """The samples and labels a client used in one round, in the order it used them.

    ``partition_id`` names the client stably across runs (Flower's node ids are random); it
    is auditor metadata, like the samples, and never reaches an attack.
    """

    inputs: np.ndarray
    labels: np.ndarray
    partition_id: int = -1


class AuditStore:
    """Ground truth on disk under ``root`` (one run's folder, or a shared volume).

    Parameters
    ----------
    root : Path
        Folder of one run's audit records; created on first write.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, server_round: int, node_id: int) -> Path:
        """Where the record of ``(server_round, node_id)`` lives."""
        return self.root / f"round_{server_round:04d}" / f"node_{node_id}.npz"

    def write(self, server_round: int, node_id: int, truth: GroundTruth) -> Path:
        """Write atomically, so a reader never sees half a record."""
        target = self.path(server_round, node_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle, inputs=truth.inputs, labels=truth.labels, partition_id=truth.partition_id
            )
        os.replace(tmp, target)
        return target

    def read(self, server_round: int, node_id: int) -> GroundTruth:
        """Read one record.

        Raises
        ------
        FileNotFoundError
            If the client did not audit that round (audit disabled, or it never trained).
        """
        with np.load(self.path(server_round, node_id)) as data:
            partition = int(data["partition_id"]) if "partition_id" in data else -1
            return GroundTruth(data["inputs"], data["labels"], partition)

    def has(self, server_round: int, node_id: int) -> bool:
        """Whether a record exists."""
        return self.path(server_round, node_id).is_file()

    def union(self, server_round: int, node_ids: Iterable[int]) -> GroundTruth:
        """The samples of ``node_ids`` in one round, concatenated in node-id order.

        The ground truth of a sum of updates (secure aggregation) is every sample behind
        it; nodes without a record are left out. ``partition_id`` is -1: no one client.

        Raises
        ------
        FileNotFoundError
            If none of the nodes has a record of that round.
        """
        ids = sorted(node_ids)
        found = [self.read(server_round, n) for n in ids if self.has(server_round, n)]
        if not found:
            raise FileNotFoundError(f"no audit record of round {server_round} for nodes {ids}")
        return GroundTruth(
            np.concatenate([t.inputs for t in found]), np.concatenate([t.labels for t in found])
        )
