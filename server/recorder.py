"""The auditor: joins each reconstruction with the audit store's ground truth and records it."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from fedleak.attacks.types import AttackFailure, Reconstruction, Status
from fedleak.server.pool.jobs import AttackResult
from fedleak.simulator import record_keys as keys
from fedleak.simulator.data.domain import DataDomain
from fedleak.simulator.metrics.modality import measure_leakage
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.results import STATUS_OK, JsonlAppender, LeakageRecord, RunPaths


class LeakageRecorder:
    """Turns attack results into :class:`LeakageRecord` rows, appended as they arrive.

    Parameters
    ----------
    paths : RunPaths
        The run directory.
    audit : AuditStore | None
        Ground truth; ``None`` when auditing is off (rows then carry no metrics).
    domain : DataDomain | None
        The data's modality (its metrics: :mod:`fedleak.simulator.metrics.modality`) and encoder,
        written to the run directory for the report; ``None``: images.
    """

    def __init__(
        self, paths: RunPaths, audit: AuditStore | None, domain: DataDomain | None = None
    ) -> None:
        self.paths = paths
        self.audit = audit
        self.domain = domain or DataDomain()
        if domain is not None:
            domain.write(paths.root)
        self.records: list[LeakageRecord] = []
        self._aggregated: dict[int, int] = {}  # round -> clients in its secure aggregate
        self._lock = threading.Lock()
        self._jsonl = JsonlAppender(paths.leakage_jsonl)

    def _base(self, result: AttackResult, status: Status, reason: str = "") -> LeakageRecord:
        server_round, node_id, attack = result.job.key
        return LeakageRecord(
            round=server_round,
            node_id=node_id,
            attack=attack,
            status=status,
            reason=reason,
            client=self._client_of(server_round, node_id),
            worker=result.worker,
            device=result.device,
            attack_time_s=result.outcome.wall_time_s,
            details=self._target_details(server_round, node_id),
        )

    def _measure(self, result: AttackResult, recon: Reconstruction) -> LeakageRecord:
        server_round, node_id, attack = result.job.key
        base = self._base(result, STATUS_OK)
        base = replace(base, iterations=recon.iterations, details={**base.details, **recon.details})
        if self.audit is None or not self.audit.has(server_round, node_id):
            return replace(base, reason="no ground truth (audit disabled)")
        truth = self.audit.read(server_round, node_id)
        modality, encoder = self.domain.modality, self.domain.encoder
        metrics = measure_leakage(
            truth.inputs,
            truth.labels,
            recon.inputs,
            recon.labels,
            modality=modality,
            encoder=encoder,
        )
        init_psnr = math.nan
        if recon.initial_inputs is not None:
            init_psnr = measure_leakage(
                truth.inputs,
                truth.labels,
                recon.initial_inputs,
                recon.labels,
                modality=modality,
                encoder=encoder,
            ).psnr_mean
        target = self.paths.reconstruction_file(server_round, node_id, attack)
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target, inputs=recon.inputs, labels=recon.labels)
        measured: dict[str, Any] = {**metrics.to_row(), "psnr_init_mean": init_psnr}
        return replace(base, **measured)

    def _append(self, row: LeakageRecord) -> LeakageRecord:
        with self._lock:
            self._jsonl.append(row.to_json())
            self.records.append(row)
        return row

    def _client_of(self, server_round: int, node_id: int) -> int:
        if self.audit is None or not self.audit.has(server_round, node_id):
            return -1
        return self.audit.read(server_round, node_id).partition_id

    def _target_details(self, server_round: int, node_id: int) -> dict[str, Any]:
        if node_id != keys.AGGREGATE_NODE_ID or server_round not in self._aggregated:
            return {}
        clients = self._aggregated[server_round]
        return {"target": f"secure aggregate of {clients} clients", "aggregated_clients": clients}

    def register_aggregate(self, server_round: int, node_ids: Sequence[int]) -> None:
        """Announce that ``node_ids``' updates of a round reach the server only as a sum.

        Its rows carry ``node_id`` :data:`~fedleak.simulator.record_keys.AGGREGATE_NODE_ID`,
        ``client`` -1 and ``details["target"]``. The auditor writes the union of those
        clients' samples to the audit store under that node id (once, before the round's
        attacks are submitted), so matching compares a reconstruction with all of them.
        """
        self._aggregated[server_round] = len(node_ids)
        if self.audit is not None and any(self.audit.has(server_round, n) for n in node_ids):
            union = self.audit.union(server_round, node_ids)
            self.audit.write(server_round, keys.AGGREGATE_NODE_ID, union)

    def record_failure(
        self, server_round: int, node_id: int, attack: str, status: Status, reason: str
    ) -> LeakageRecord:
        """Record an attack that never ran (e.g. a malformed update)."""
        client = self._client_of(server_round, node_id)
        details = self._target_details(server_round, node_id)
        return self._append(
            LeakageRecord(server_round, node_id, attack, status, reason, client, details=details)
        )

    def record(self, result: AttackResult) -> LeakageRecord:
        """Measure and append one row; a measuring error is itself a recorded failure."""
        outcome = result.outcome
        if isinstance(outcome, AttackFailure):
            row = self._base(result, outcome.status, outcome.reason)
        else:
            try:
                row = self._measure(result, outcome)
            except Exception as exc:  # a bad reconstruction shape must not stop the run
                reason = f"measuring failed: {type(exc).__name__}: {exc}"
                row = self._base(result, Status.FAILED, reason)
        return self._append(row)

    def best_psnr(self) -> float:
        """Best mean PSNR of any row so far (NaN when none)."""
        with self._lock:
            values = [r.psnr_mean for r in self.records if not math.isnan(r.psnr_mean)]
        return max(values) if values else math.nan

    def close(self) -> None:
        """Close the JSONL file."""
        self._jsonl.close()
