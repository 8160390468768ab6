"""fedleak's gradient-inversion library: torch, numpy and scipy only.

Importing the package registers every attack it ships; :func:`available_attacks` lists them.
"""

from fedleak.attacks import analytic, direct_batch, dlg, idlg, inverting_gradients, spear, tableak
from fedleak.attacks.analytic import AnalyticAttack, AnalyticConfig
from fedleak.attacks.base import Attack, AttackConfig, config_from_mapping, execute_attack
from fedleak.attacks.direct_batch import DirectBatchAttack, DirectBatchConfig
from fedleak.attacks.dlg import DLGAttack, DLGConfig
from fedleak.attacks.idlg import IDLGAttack, IDLGConfig
from fedleak.attacks.inverting_gradients import InvertingGradientsAttack, InvertingGradientsConfig
from fedleak.attacks.registry import attack_class, available_attacks, create_attack, register_attack
from fedleak.attacks.spear import SpearAttack, SpearConfig
from fedleak.attacks.tableak import TabLeakAttack, TabLeakConfig
from fedleak.attacks.types import (
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
