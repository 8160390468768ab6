"""fedleak's gradient-inversion library: torch, numpy and scipy only.

Importing the package registers every attack it ships; :func:`available_attacks` lists them.
"""

from attacks import analytic, direct_batch, dlg, idlg, inverting_gradients, spear, tableak
from attacks.analytic import AnalyticAttack, AnalyticConfig
from attacks.base import Attack, AttackConfig, config_from_mapping, execute_attack
from attacks.direct_batch import DirectBatchAttack, DirectBatchConfig
from attacks.dlg import DLGAttack, DLGConfig
from attacks.idlg import IDLGAttack, IDLGConfig
from attacks.inverting_gradients import InvertingGradientsAttack, InvertingGradientsConfig
from attacks.registry import attack_class, available_attacks, create_attack, register_attack
from attacks.spear import SpearAttack, SpearConfig
from attacks.tableak import TabLeakAttack, TabLeakConfig
from attacks.types import (
    AttackFailure,
    AttackOutcome,
    AttackStatus,
    Disclosure,
    InputDomain,
    InterceptedUpdate,
    LossName,
    Reconstruction,
    Status,
    TrainingHyperparams,
    TrainingMode,
)

__all__ = [
    "AnalyticAttack",
    "AnalyticConfig",
    "Attack",
    "AttackConfig",
    "AttackFailure",
    "AttackOutcome",
    "AttackStatus",
    "DLGAttack",
    "DLGConfig",
    "DirectBatchAttack",
    "DirectBatchConfig",
    "Disclosure",
    "IDLGAttack",
    "IDLGConfig",
    "InputDomain",
    "InterceptedUpdate",
    "InvertingGradientsAttack",
    "InvertingGradientsConfig",
    "LossName",
    "Reconstruction",
    "SpearAttack",
    "SpearConfig",
    "Status",
    "TabLeakAttack",
    "TabLeakConfig",
    "TrainingHyperparams",
    "TrainingMode",
    "analytic",
    "attack_class",
    "available_attacks",
    "config_from_mapping",
    "create_attack",
    "direct_batch",
    "dlg",
    "execute_attack",
    "idlg",
    "inverting_gradients",
    "register_attack",
    "spear",
    "tableak",
]
