"""``defense=dp``: local differential privacy by Flower's ``LocalDpMod``, seeded per run."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.mod import LocalDpMod
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak.clients.defenses.base import ClientDefense, defense_rng, register_client_defense
from fedleak.clients.seeding import numpy_global_seed
from fedleak.clients.update_defenses import dp_noise_epsilon
from fedleak.simulator.config.client_setup import ClientSetup
from fedleak.simulator.config.schema import DefenseConfig


@register_client_defense
class LocalDpDefense(ClientDefense):
    """Clip the update to ``defense.dp.clip`` and add Gaussian noise of std ``noise * clip``."""

    name = "dp"

    def mod(self, setup: ClientSetup, defense: DefenseConfig) -> Mod:
        """Flower's ``LocalDpMod`` with noise std ``noise * clip``, drawn from a seeded stream.

        ``LocalDpMod`` draws from numpy's global generator; the global state is set from the
        run's seed for the call and restored afterwards, so runs stay reproducible.
        """
        dp = defense.dp
        flower_mod = LocalDpMod(
            clipping_norm=dp.clip,
            sensitivity=dp.clip,
            epsilon=dp_noise_epsilon(dp.noise, dp.delta),
            delta=dp.delta,
        )

        def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
            seed = int(defense_rng(setup, msg, context, self.name).integers(2**32))
            with numpy_global_seed(seed):
                return flower_mod(msg, context, call_next)

        return mod
