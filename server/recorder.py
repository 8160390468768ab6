"""The auditor: joins each reconstruction with the audit store's ground truth and records it."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from typing import Any

import numpy as np

from attacks.types import AttackFailure, Reconstruction
from server.pool.jobs import AttackResult
from simulator.audit import AuditStore
from simulator.metrics import compute_leakage
from simulator.results import STATUS_OK, JsonlAppender, LeakageRecord, RunPaths


class LeakageRecorder:
    """Turns attack results into :class:`LeakageRecord` rows, appended as they arrive.

    Parameters
    ----------
    paths : RunPaths
        The run directory.
    audit : AuditStore | None
        Ground truth; ``None`` when auditing is off (rows then carry no metrics).
    """

    def __init__(self, paths: RunPaths, audit: AuditStore | None) -> None:
        self.paths = paths
        self.audit = audit
        self.records: list[LeakageRecord] = []
        self._lock = threading.Lock()
        self._jsonl = JsonlAppender(paths.leakage_jsonl)

    def _base(self, result: AttackResult, status: str, reason: str = "") -> LeakageRecord:
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
        )

    def _measure(self, result: AttackResult, recon: Reconstruction) -> LeakageRecord:
        server_round, node_id, attack = result.job.key
        base = replace(
            self._base(result, STATUS_OK), iterations=recon.iterations, details=dict(recon.details)
        )
        if self.audit is None or not self.audit.has(server_round, node_id):
            return replace(base, reason="no ground truth (audit disabled)")
        truth = self.audit.read(server_round, node_id)
        metrics = compute_leakage(truth.inputs, truth.labels, recon.inputs, recon.labels)
        init_psnr = math.nan
        if recon.initial_inputs is not None:
            init_psnr = compute_leakage(
                truth.inputs, truth.labels, recon.initial_inputs, recon.labels
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

    def record_failure(
        self, server_round: int, node_id: int, attack: str, status: str, reason: str
    ) -> LeakageRecord:
        """Record an attack that never ran (e.g. a malformed update)."""
        client = self._client_of(server_round, node_id)
        return self._append(LeakageRecord(server_round, node_id, attack, status, reason, client))

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
                row = self._base(result, "failed", reason)
        return self._append(row)

    def best_psnr(self) -> float:
        """Best mean PSNR of any row so far (NaN when none)."""
        with self._lock:
            values = [r.psnr_mean for r in self.records if not math.isnan(r.psnr_mean)]
        return max(values) if values else math.nan

    def close(self) -> None:
        """Close the JSONL file."""
        self._jsonl.close()
