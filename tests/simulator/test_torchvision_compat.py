"""torchvision imports in every fedleak process next to the CPU torch, without user action."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_simulator_first_makes_torchvision_usable() -> None:
    proc = _python(
        "import simulator, torch, torchvision\n"
        "from torchvision.models import resnet18\n"
        "from torchvision.utils import make_grid\n"
        "from torchmetrics.functional.image import structural_similarity_index_measure as ssim\n"
        "x = torch.rand(2, 3, 16, 16)\n"
        "assert make_grid(x).shape[0] == 3\n"
        "assert resnet18(num_classes=3).eval()(torch.rand(1, 3, 32, 32)).shape == (1, 3)\n"
        "assert float(ssim(x, x, data_range=1.0)) > 0.99\n"
        "print('ok')"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_shim_is_a_no_op_where_the_extension_loads() -> None:
    proc = _python(
        "import fedleak.simulator.torchvision_compat as c, torch\n"
        "import torchvision.extension as e\n"
        "print(c.torchvision_patched(), e._has_ops())"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    patched, has_ops = proc.stdout.split()
    assert patched != has_ops  # declared the schemas exactly when the real ops are missing
