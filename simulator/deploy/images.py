"""The deployment's images: the wheelhouse they install from, and ``docker build``.

The images install Python packages only from ``docker/wheelhouse/`` (``--no-index``), which
is prepared here on the host with ``pip download``: the host's pip configuration decides
where wheels come from (a local CPU torch file, a mirror, PyPI), and the image build needs
no package index.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from fedleak.simulator import exit_codes
from fedleak.simulator.errors import FedleakError

WHEELHOUSE = Path("docker") / "wheelhouse"
CUDA_WHEELHOUSE = Path("docker") / "wheelhouse-cuda"
PYPI = "https://pypi.org/simple"
CONSTRAINTS = Path("docker") / "constraints.txt"
REQUIREMENTS = "requirements.txt"
STAMP = ".fedleak-stamp"
BUILD_TOOLS = ("setuptools>=68", "wheel")
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


class ImageBuildError(FedleakError, RuntimeError):
    """Preparing the wheelhouse or building an image failed (the message says how to fix)."""

    exit_code = exit_codes.DEPLOY_ERROR


def project_dependencies(repo: Path) -> list[str]:
    """The ``[project] dependencies`` of ``repo/pyproject.toml``."""
    with (repo / "pyproject.toml").open("rb") as handle:
        deps: list[str] = tomllib.load(handle)["project"]["dependencies"]
    return deps


def _stamp(repo: Path) -> str:
    text = "\n".join(project_dependencies(repo)) + (repo / CONSTRAINTS).read_text()
    return hashlib.sha256(text.encode()).hexdigest()


def _pip(*args: str, env: dict[str, str] | None = None, timeout: float = 3600) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise ImageBuildError(
            f"'pip {' '.join(args[:2])} ...' failed: {proc.stderr.strip()[-1500:]}\n"
            "the wheelhouse is prepared with this machine's pip configuration: make the pinned "
            f"versions of {CONSTRAINTS} reachable (index, mirror or --find-links)"
        )


def prepare_wheelhouse(repo: Path, cuda: bool = False) -> Path:
    """Download every wheel an image needs into ``docker/wheelhouse`` (``-cuda``).

    Versions follow ``docker/constraints.txt``; source distributions are built into wheels
    here so the image needs no compiler. ``requirements.txt`` in the wheelhouse lists the
    exact set. Skipped when the wheelhouse matches the current dependencies and constraints.
    The CPU wheelhouse uses this machine's pip configuration (which may offer a CPU torch);
    the CUDA one uses only ``$FEDLEAK_PIP_INDEX_URL`` (default PyPI, whose Linux torch is
    the CUDA build).
    """
    dest = repo / (CUDA_WHEELHOUSE if cuda else WHEELHOUSE)
    stamp = _stamp(repo)
    if (dest / STAMP).is_file() and (dest / STAMP).read_text() == stamp:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    env = None
    if cuda:  # ignore configured find-links/extra indexes that may hold a CPU torch
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        env["PIP_INDEX_URL"] = os.environ.get("FEDLEAK_PIP_INDEX_URL", PYPI)
    constraints = str(repo / CONSTRAINTS)
    _pip("download", "-q", "-d", str(dest), "-c", constraints, *BUILD_TOOLS,
         *project_dependencies(repo), env=env)  # fmt: skip
    for sdist in [*dest.glob("*.tar.gz"), *dest.glob("*.zip")]:
        _pip("wheel", "-q", "--no-deps", "-w", str(dest), str(sdist))
        sdist.unlink()
    pins = sorted(
        f"{m['name']}=={m['version']}"
        for m in (_WHEEL_NAME.match(p.name) for p in dest.glob("*.whl"))
        if m is not None
    )
    (dest / REQUIREMENTS).write_text("\n".join(pins) + "\n")
    (dest / STAMP).write_text(stamp)
    return dest


def image_id(docker: str, tag: str) -> str | None:
    """The ID of the image ``tag`` names, or None where there is none."""
    proc = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def remove_superseded(docker: str, previous: str | None, tag: str) -> str | None:
    """Remove ``previous``, the image ``tag`` named before a rebuild; say what happened.

    A rebuilt tag leaves the image it replaced untagged, and each one holds the full set of
    Python packages (gigabytes). It is removed unless ``tag`` still names it (nothing
    changed) or a container uses it, in which case it is kept and the message says why.

    Returns
    -------
    str or None
        One line for the user, or None where ``tag`` names the same image as before.
    """
    if previous is None or previous == image_id(docker, tag):
        return None
    short = previous.removeprefix("sha256:")[:12]
    proc = subprocess.run([docker, "image", "rm", previous], capture_output=True, text=True)
    if proc.returncode == 0:
        return f"removed {short}, the image {tag} named before"
    reason = proc.stderr.strip().splitlines()[-1:] or ["no reason given"]
    return f"kept {short}, the image {tag} named before: {reason[0]}"


def build_image(
    docker: str, repo: Path, tag: str, dockerfile: str, base_image: str | None = None
) -> str | None:
    """``docker build`` ``tag`` from ``dockerfile`` with the repository as context.

    The image ``tag`` named before is removed afterwards (see `remove_superseded`), so
    rebuilding does not leave gigabytes of untagged images behind.

    Returns
    -------
    str or None
        What became of the image ``tag`` named before, or None where there was none.
    """
    previous = image_id(docker, tag)
    cmd = [docker, "build", "-f", str(repo / dockerfile), "-t", tag]
    if base_image:
        cmd += ["--build-arg", f"BASE_IMAGE={base_image}"]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}  # the Dockerfiles bind-mount the wheelhouse
    proc = subprocess.run([*cmd, str(repo)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-3000:]
        hint = ""
        if "buildx" in out:
            hint = (
                "\nthis docker client needs the buildx plugin for BuildKit: install it "
                "(docker-buildx), or set FEDLEAK_DOCKER to a client with BuildKit built in "
                "(Debian's docker.io: /usr/bin/docker)"
            )
        raise ImageBuildError(f"docker build of {tag} failed:\n{out}{hint}")
    return remove_superseded(docker, previous, tag)
