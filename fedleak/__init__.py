"""fedleak: federated learning on Flower with an honest-but-curious server.

The server aggregates exactly as the plain strategy does and, beside that, measures how much of
each client's training data gradient inversion reconstructs from its update. One import root,
four packages:

- :mod:`fedleak.attacks`: the gradient-inversion library (torch, numpy and scipy only);
- :mod:`fedleak.simulator`: what an experiment is and how it runs, and the ``fedleak`` CLI;
- :mod:`fedleak.clients`: the Flower ClientApp (``fedleak.clients.app:app``);
- :mod:`fedleak.server`: the Flower ServerApp (``fedleak.server.app:app``).

In the repository the four live in the top-level folders ``attacks/``, ``simulator/``,
``clients/`` and ``server/``, and ``fedleak/<name>`` are relative links to them; a built wheel
holds the files themselves under ``fedleak/``.
"""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("fedleak")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

# A Flower App Bundle (``flwr run .``, ``flwr build``) leaves symbolic links out, so in one the
# four packages sit next to this folder instead of below it: look for them there too.
if not (Path(__file__).parent / "attacks").is_dir():
    __path__.append(str(Path(__file__).resolve().parent.parent))
