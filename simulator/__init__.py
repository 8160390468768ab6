"""fedleak's experiment layer: what an experiment is and how it runs, in subpackages by role.

Bottom to top (a layer imports only the layers below it; ``tests/test_layering.py`` checks):

- modules beside this file that everything may use: :mod:`.errors` and :mod:`.exit_codes` (one
  error base, its exit codes), :mod:`.record_keys` (Flower record keys), :mod:`.plugins` and
  :mod:`.defenses` (user components), :mod:`.torchvision_compat`;
- :mod:`.data` and :mod:`.models`, then :mod:`.config` and :mod:`.metrics` on them;
- :mod:`.runtime`: what runs an experiment and what a run writes;
- :mod:`.report`, :mod:`.sweep` and :mod:`.deploy`, side by side;
- :mod:`.cli` and :mod:`.catalog`: the ``fedleak`` command line.
"""

from fedleak.simulator.torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()
