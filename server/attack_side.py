"""What every federation path builds the same way: the model spec, and the curious side.

The plain path (:mod:`fedleak.server.federation`) and the secure-aggregation path
(:mod:`fedleak.server.secagg_federation`) differ in how rounds run, not in how the experiment's
model is described or how intercepted updates reach the attack pool and the recorder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fedleak.server.pipeline import AttackPipeline, AttackPlan
from fedleak.server.policy import AttackPolicy
from fedleak.server.pool import create_pool
from fedleak.server.recorder import LeakageRecorder
from fedleak.server.update_store import UpdateStore
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.data.datasets import DatasetSplits
from fedleak.simulator.data.domain import DataDomain
from fedleak.simulator.models.architectures import ModelSpec
from fedleak.simulator.runtime.audit import AuditStore
from fedleak.simulator.runtime.experiment_data import (
    attack_names,
    experiment_spec,
    experiment_splits,
)
from fedleak.simulator.runtime.results import RunPaths

logger = logging.getLogger(__name__)


def experiment_model(cfg: ExperimentConfig) -> tuple[ModelSpec, DatasetSplits]:
    """The architecture every participant trains, and the data splits it was sized from."""
    splits = experiment_splits(cfg)
    return experiment_spec(cfg, splits), splits


@dataclass
class AttackSide:
    """The curious server's parts: audit store (evaluation mode), recorder, pipeline, and
    the store of intercepted updates a resumed run re-attacks from."""

    audit: AuditStore | None
    recorder: LeakageRecorder
    pipeline: AttackPipeline
    updates: UpdateStore | None


def build_attack_side(cfg: ExperimentConfig, paths: RunPaths, spec: ModelSpec) -> AttackSide:
    """The attack pipeline of ``cfg`` (pool, policy, recorder) writing into ``paths``."""
    audit = AuditStore(paths.audit) if cfg.attack.audit else None
    train = experiment_splits(cfg).train
    recorder = LeakageRecorder(paths, audit, DataDomain.of(train))
    names, notice = attack_names(cfg, spec)
    if notice is not None:
        logger.info("fedleak: %s", notice)
    plan = AttackPlan(
        names=names,
        params=cfg.attack.params,
        seed=cfg.seed,
        device=cfg.device,
        effort=cfg.attack.effort,
        disclose_labels="labels" in cfg.attack.disclose,
        policy=AttackPolicy(
            cfg.attack.rounds, cfg.attack.client_fraction, cfg.attack.client_ids, cfg.seed
        ),
        max_pending=cfg.pool.max_pending,
        when_full=cfg.pool.when_full,
    )
    updates = UpdateStore(paths.updates) if cfg.pool.persist_updates else None
    pipeline = AttackPipeline(
        create_pool(cfg.pool),
        recorder,
        plan,
        spec,
        audit,
        update_store=updates,
        input_domain=train.domain,
    )
    return AttackSide(audit, recorder, pipeline, updates)
