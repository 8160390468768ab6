"""Make ``import torchvision`` work next to a CPU-only torch.

The only torchvision that pins ``torch==2.13.0`` is a CUDA build. Next to the CPU torch its
C++ extension does not load, and torchvision's fake-tensor registrations then die with
``operator torchvision::nms does not exist``. Declaring the two op schemas first lets the
pure-Python parts (transforms, model definitions, ``utils.make_grid``) work; the ops
themselves (``torchvision.ops.nms``) stay unavailable, which fedleak never uses.

Where the extension loads (a CUDA machine, a matching CPU build) nothing is changed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# Keeps the op declarations alive: they are removed when the Library object is collected.
_fragment: torch.library.Library | None = None


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to patch
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    if not candidates:
        return False
    try:
        torch.ops.load_library(str(candidates[0]))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Declare torchvision's op schemas when, and only when, its extension cannot load.

    Idempotent; must run before torchvision is first imported in each process. Called
    on import of the ``simulator`` package, so every fedleak process (CLI, Ray actors,
    Flower app processes) gets it without the user doing anything.
    """
    global _fragment
    if _fragment is not None or "torchvision" in sys.modules:
        return
    if _extension_loads():
        return
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _fragment.define(schema)


def torchvision_patched() -> bool:
    """Whether this process declared the op schemas itself (for diagnostics and tests)."""
    return _fragment is not None
