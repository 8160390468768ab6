"""A Docker engine for the deployment tests: install, start, and put the host back.

``dockerd`` rewrites the host's firewall (its own chains, FORWARD policy DROP) and adds a
``docker0`` bridge. :class:`DockerEngine` saves the iptables state before it starts a
daemon and restores it, and removes what the daemon left, after stopping the daemon by its
PID. A daemon that was already running is used as it is and left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = {
    "dockerd": "docker.io",
    "docker-compose": "docker-compose",
    "debootstrap": "debootstrap",
}
DOCKER = "/usr/bin/docker"  # Debian's client matches its daemon (another may come first on PATH)
SAVE_RESTORE = (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore"))
FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")
EMPTY_TABLES = {  # what a table docker touches looks like when nothing had set it up
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


def restorable(saved: str) -> str:
    """``saved`` (iptables-save output) plus empty default tables for those it lacks.

    iptables-restore flushes only the tables named in its input; a table that did not
    exist before dockerd must be named too, or docker's chains and DROP policy would stay.
    """
    extra = [
        "\n".join([f"*{table}", *(f":{c} ACCEPT [0:0]" for c in chains), "COMMIT"])
        for table, chains in EMPTY_TABLES.items()
        if f"*{table}\n" not in saved
    ]
    return saved + "".join(f"{block}\n" for block in extra)


class DockerUnavailableError(RuntimeError):
    """Docker cannot run on this machine (the reason says why)."""


def _run(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def docker_client() -> str:
    """The docker client to use: Debian's, else the first on PATH."""
    return DOCKER if os.path.exists(DOCKER) else (shutil.which("docker") or DOCKER)


def ensure_packages() -> None:
    """Install docker.io, docker-compose and debootstrap with apt where missing (root only)."""
    missing = [pkg for exe, pkg in PACKAGES.items() if shutil.which(exe) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DockerUnavailableError(
            f"missing {missing} and cannot install them (needs root and apt)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:
            raise DockerUnavailableError(f"{' '.join(cmd)} failed: {proc.stderr[-1500:]}")


def daemon_running() -> bool:
    """Whether a Docker daemon answers on the default socket."""
    proc = subprocess.run(
        [docker_client(), "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode == 0


@dataclass
class DockerEngine:
    """A ``dockerd`` this session started (or found running), and the host state to restore."""

    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    saved_tables: dict[str, str] = field(default_factory=dict)
    saved_forwarding: str | None = None
    had_docker0: bool = False

    def start(self, timeout_s: float = 60) -> None:
        """Start ``dockerd`` unless one answers already; wait until it answers."""
        if daemon_running():
            return
        if os.geteuid() != 0:
            raise DockerUnavailableError("no Docker daemon is running and starting one needs root")
        for save, _ in SAVE_RESTORE:
            if shutil.which(save):
                self.saved_tables[save] = _run(save, check=False).stdout
        if FORWARDING.exists():
            self.saved_forwarding = FORWARDING.read_text()
        self.had_docker0 = Path("/sys/class/net/docker0").exists()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["dockerd", "--pidfile", "/var/run/deploy-fedleak-dockerd.pid"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not daemon_running():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise DockerUnavailableError(f"dockerd did not start: {tail}")
            time.sleep(1)

    def stop(self) -> None:
        """Stop the daemon this engine started (by PID) and put the firewall back."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None
        for save, restore in SAVE_RESTORE:
            if save in self.saved_tables and shutil.which(restore):
                subprocess.run(
                    [restore],
                    input=restorable(self.saved_tables[save]),
                    text=True,
                    capture_output=True,
                )
        if self.saved_forwarding is not None:
            FORWARDING.write_text(self.saved_forwarding)
        if not self.had_docker0 and Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True)


def ensure_base_image(tag: str, work_dir: Path) -> None:
    """Build ``tag`` from a minimal Debian bookworm (debootstrap) unless it exists."""
    client = docker_client()
    if _run(client, "image", "inspect", tag, check=False).returncode == 0:
        return
    root = work_dir / "bookworm-rootfs"
    mirror = os.environ.get("FEDLEAK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    proc = subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(root), mirror],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise DockerUnavailableError(
            f"debootstrap failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        )
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [client, "import", "-", tag], stdin=tar.stdout, capture_output=True, text=True
    )
    tar.wait()
    shutil.rmtree(root, ignore_errors=True)
    if imported.returncode != 0:
        raise DockerUnavailableError(f"docker import failed: {imported.stderr[-1500:]}")


def trim_build_cache(keep: str) -> None:
    """Prune Docker's build cache down to ``keep`` (a size such as ``"4GB"``).

    Every build of a changed image adds its layers to the cache, gigabytes each with the
    Python packages, and nothing else removes them: over repeated test sessions on one
    machine they filled its disk.
    """
    prune = ("builder", "prune", "--force", "--keep-storage", keep)
    _run(docker_client(), *prune, timeout=600, check=False)
