"""The attack pool: backends ``ray`` (actors, GPU-aware) and ``inprocess`` (threads)."""

from fedleak.server.pool.base import (
    AttackPool,
    available_pool_backends,
    create_pool,
    register_pool_backend,
)
from fedleak.server.pool.inprocess import InProcessAttackPool
from fedleak.server.pool.jobs import AttackJob, AttackResult, job_seed
from fedleak.server.pool.ray_pool import RayAttackPool

__all__ = [
    "AttackJob",
    "AttackPool",
    "AttackResult",
    "InProcessAttackPool",
    "RayAttackPool",
    "available_pool_backends",
    "create_pool",
    "job_seed",
    "register_pool_backend",
]
