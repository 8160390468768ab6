"""One import root when bundled: a Flower App Bundle runs its own copy of ``fedleak``.

``flwr run .`` and ``flwr build`` bundle the project folder but leave symbolic links out, so
the bundle's ``fedleak/`` holds only ``__init__.py`` while the four packages travel as the
top-level folders ``attacks/``, ``clients/``, ``server/``, ``simulator/``. Flower puts the
bundle first on ``sys.path`` and imports ``fedleak.server.app``: the bundle's
``fedleak/__init__.py`` must then find its packages beside it, and the bundle's code (not an
installed copy) must run.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attacks", "clients", "server", "simulator")


def test_flower_app_bundle_runs_its_own_copy_of_fedleak(tmp_path: Path) -> None:
    from flwr.cli.build import build_fab_from_disk

    with zipfile.ZipFile(io.BytesIO(build_fab_from_disk(ROOT))) as fab:
        names = set(fab.namelist())
        fab.extractall(tmp_path / "fab")
    bundle = tmp_path / "fab"
    assert {"fedleak/__init__.py", "server/app.py", "clients/app.py"} <= names
    assert not any(name.startswith(tuple(f"fedleak/{p}/" for p in PACKAGES)) for name in names)
    # as Flower's load_app does: the bundle first on sys.path, then the component's module
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import fedleak.server.app as s, fedleak.clients.app as c, fedleak.attacks as a; "
        "print(s.__file__, c.__file__, a.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(bundle)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [Path(f) for f in proc.stdout.split()[-3:]]
    expected = ["server/app.py", "clients/app.py", "attacks/__init__.py"]
    assert files == [bundle / name for name in expected]
