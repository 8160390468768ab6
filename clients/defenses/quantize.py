"""``defense=quantize``: unbiased stochastic quantisation of each update tensor."""

from __future__ import annotations

from flwr.clientapp.typing import Mod

from fedleak.clients.defenses.base import ClientDefense, register_client_defense, update_mod
from fedleak.clients.update_defenses import quantize_stochastic
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.config.schema import DefenseConfig


@register_client_defense
class QuantizeDefense(ClientDefense):
    """Quantise every float tensor of the update to ``defense.quantize.bits`` bits."""

    name = "quantize"

    def mod(self, setup: ClientSetup, defense: DefenseConfig) -> Mod:
        """The update mod with the run's bit width."""
        bits = defense.quantize.bits
        return update_mod(self.name, lambda d, rng: quantize_stochastic(d, bits, rng), setup)
