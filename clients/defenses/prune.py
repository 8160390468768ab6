"""``defense=prune``: top-k sparsification of the update (Zhu et al., "Deep Leakage from
Gradients", NeurIPS 2019, arXiv:1906.08935, defenses: pruning)."""

from __future__ import annotations

from flwr.clientapp.typing import Mod

from fedleak.clients.defenses.base import ClientDefense, register_client_defense, update_mod
from fedleak.clients.update_defenses import prune_smallest
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.config.schema import DefenseConfig


@register_client_defense
class PruneDefense(ClientDefense):
    """Zero the ``defense.prune.fraction`` of update entries of smallest magnitude."""

    name = "prune"

    def mod(self, setup: ClientSetup, defense: DefenseConfig) -> Mod:
        """The update mod with the run's fraction."""
        fraction = defense.prune.fraction
        return update_mod(self.name, lambda d, _rng: prune_smallest(d, fraction), setup)
