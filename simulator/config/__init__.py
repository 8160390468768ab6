"""The experiment config: its typed schema (:mod:`.schema`), the accepted values read from the
registries (:mod:`.choices`), parsing and validation that name every bad key
(:mod:`.validation`, :mod:`.key_hints`), composition of ``configs/`` with Hydra
(:mod:`.compose`), run names (:mod:`.naming`), user components by import path (:mod:`.targets`),
and what the server writes into a client's ConfigRecord (:mod:`.hyperparams`,
:mod:`.client_setup`). It sits on :mod:`fedleak.simulator.data` and
:mod:`fedleak.simulator.models` (whose registries name the accepted values) and below everything
that runs an experiment.
"""
