"""The compose stack of ``fedleak deploy``: which files, which command, and its state.

``docker-compose.yml`` holds the insecure single-machine stack with two SuperNodes;
``docker-compose.tls.yml`` adds TLS; ``docker-compose.gpu.yml`` reserves GPUs for attack
workers. Other SuperNode counts come from an override generated into the deploy directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from fedleak.simulator import exit_codes
from fedleak.simulator.errors import FedleakError

BASE_FILE = "docker-compose.yml"
TLS_FILE = "docker-compose.tls.yml"
GPU_FILE = "docker-compose.gpu.yml"
NODES_FILE = "docker-compose.nodes.yml"
STATE_FILE = "stack.json"
CPU_IMAGE, CUDA_IMAGE = "fedleak:cpu", "fedleak:cuda"
CONTAINER_RUNS = "/data/runs"
RAY_HEAD_ADDRESS = "ray-head:6379"
"""The ServerApp container is a Ray node, so its pool joins the cluster as a driver."""


class DeployError(FedleakError, RuntimeError):
    """A deployment step cannot go on; the message says what is wrong and how to fix it."""

    exit_code = exit_codes.DEPLOY_ERROR


def docker_client() -> str:
    """``$FEDLEAK_DOCKER``, else ``docker`` on PATH; :class:`DeployError` when there is none."""
    if configured := os.environ.get("FEDLEAK_DOCKER"):
        if shutil.which(configured) is None:
            raise DeployError(
                f"FEDLEAK_DOCKER={configured} is not an executable docker client: "
                "point it at one (e.g. /usr/bin/docker) or unset it"
            )
        return configured
    client = shutil.which("docker")
    if not client:
        raise DeployError(
            "docker is not installed: install Docker Engine (Debian: apt-get install docker.io "
            "docker-compose) or set FEDLEAK_DOCKER to the docker client"
        )
    return client


def compose_command() -> list[str]:
    """``docker-compose`` (v1) if installed, else ``docker compose`` (v2)."""
    if found := shutil.which("docker-compose"):
        return [found]
    client = docker_client()
    probe = subprocess.run([client, "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return [client, "compose"]
    raise DeployError(
        "Docker Compose is not installed: install docker-compose (Debian: apt-get install "
        "docker-compose) or the docker compose plugin"
    )


def check_daemon() -> None:
    """Raise :class:`DeployError` unless a Docker daemon answers."""
    proc = subprocess.run(
        [docker_client(), "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no answer"
        raise DeployError(
            f"the Docker daemon is not running or not reachable ({reason}): start it "
            "(systemctl start docker, or dockerd as root) or join the docker group"
        )


def has_gpus() -> bool:
    """Whether this host shows NVIDIA GPUs (``nvidia-smi -L``)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    proc = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return proc.returncode == 0 and "GPU" in proc.stdout


@dataclass(frozen=True)
class Stack:
    """One deployment: compose project, options, and where its state lives."""

    repo: str
    state_dir: str
    project: str = "fedleak"
    tls: bool = False
    supernodes: int = 2
    workers: int = 1
    worker_slots: int = 1
    gpu: bool = False
    port: int = 8000

    @property
    def image(self) -> str:
        return CUDA_IMAGE if self.gpu else CPU_IMAGE

    def files(self) -> list[Path]:
        """The compose files, in override order."""
        repo, state = Path(self.repo), Path(self.state_dir)
        files = [repo / BASE_FILE]
        if self.tls:
            files.append(repo / TLS_FILE)
        if self.gpu:
            files.append(repo / GPU_FILE)
        if self.supernodes != 2:
            files.append(state / NODES_FILE)
        return files

    def env(self) -> dict[str, str]:
        """Environment the compose files read."""
        return {
            **os.environ,
            "FEDLEAK_IMAGE": self.image,
            "FEDLEAK_TLS": "1" if self.tls else "0",
            "FEDLEAK_WORKER_SLOTS": str(self.worker_slots),
            "FEDLEAK_SUPERLINK_PORT": str(self.port),
        }

    def compose(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker-compose -p PROJECT -f ... ARGS``."""
        cmd = [*compose_command(), "-p", self.project]
        for path in self.files():
            cmd += ["-f", str(path)]
        proc = subprocess.run(
            [*cmd, *args],
            capture_output=capture,
            text=True,
            env=self.env(),
            cwd=self.repo,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            out = ((proc.stdout or "") + (proc.stderr or "")).strip()[-2000:]
            raise DeployError(f"docker-compose {' '.join(args)} failed:\n{out}")
        return proc

    def container(self, service: str) -> str:
        """Id of the (first) container of ``service``."""
        ids = self.compose("ps", "-q", service).stdout.split()
        if not ids:
            raise DeployError(f"service {service} has no container: run 'fedleak deploy up'")
        return ids[0]

    def write_nodes_override(self) -> None:
        """The SuperNode services for ``supernodes`` != 2 (partition ids 0..N-1)."""
        if self.supernodes == 2:
            return
        lines = ["# generated by fedleak deploy up --supernodes; do not edit", "services:"]
        volumes = ["runs:/data/runs"] + (["certs:/certs:ro"] if self.tls else [])
        for i in range(self.supernodes):
            lines += [
                f"  supernode-{i}:",
                "    image: ${FEDLEAK_IMAGE:-fedleak:cpu}",
                '    command: ["supernode"]',
                "    init: true",
                "    environment:",
                "      FEDLEAK_TLS: ${FEDLEAK_TLS:-0}",
                f'      FEDLEAK_PARTITION_ID: "{i}"',
                f'      FEDLEAK_NUM_PARTITIONS: "{self.supernodes}"',
                "    volumes: [" + ", ".join(volumes) + "]",
                "    depends_on: [superlink]",
            ]
        path = Path(self.state_dir) / NODES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def save(self) -> None:
        """Remember this stack for ``deploy run`` / ``down``."""
        path = Path(self.state_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Stack:
        """The stack ``deploy up`` saved in ``state_dir``."""
        path = state_dir / STATE_FILE
        if not path.is_file():
            raise DeployError(f"no deployment is up ({path} missing): run 'fedleak deploy up'")
        return cls(**json.loads(path.read_text()))
