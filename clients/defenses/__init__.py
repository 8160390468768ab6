"""fedleak's own client-side update defenses: one registered class per file.

Importing the package registers them (:data:`CLIENT_DEFENSES`); defenses from other packages
are transforms registered in :mod:`fedleak.simulator.defenses` and applied by the same
:func:`~fedleak.clients.defenses.base.update_mod`.
"""

from fedleak.clients.defenses import dp, prune, quantize
from fedleak.clients.defenses.base import (
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
