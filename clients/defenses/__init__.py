"""fedleak's own client-side update defenses: one registered class per file.

Importing the package registers them (:data:`CLIENT_DEFENSES`); defenses from other packages
are transforms registered in :mod:`simulator.defenses` and applied by the same
:func:`~clients.defenses.base.update_mod`.
"""

from clients.defenses import dp, prune, quantize
from clients.defenses.base import (
    CLIENT_DEFENSES,
    ClientDefense,
    DeltaTransform,
    defense_rng,
    register_client_defense,
    update_mod,
)

__all__ = [
    "CLIENT_DEFENSES",
    "ClientDefense",
    "DeltaTransform",
    "defense_rng",
    "dp",
    "prune",
    "quantize",
    "register_client_defense",
    "update_mod",
]
