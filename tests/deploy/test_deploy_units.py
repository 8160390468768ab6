"""``fedleak deploy``'s pieces that need no Docker: overrides, generated files, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedleak.simulator.deploy.commands import deployment_overrides
from fedleak.simulator.deploy.compose_stack import NODES_FILE, Stack
from fedleak.simulator.deploy.flower import write_connection
from tests.deploy.conftest import REPO, fedleak

pytestmark = pytest.mark.deploy


def _stack(tmp_path: Path, **kwargs: object) -> Stack:
    return Stack(repo=str(REPO), state_dir=str(tmp_path), **kwargs)  # type: ignore[arg-type]


def test_deployment_overrides_fix_output_ray_and_node_count(tmp_path: Path) -> None:
    stack = _stack(tmp_path, supernodes=3, workers=2, worker_slots=2)
    got = deployment_overrides(["model=lenet", "output_dir=/host/runs"], stack)
    assert got == [
        "model=lenet",
        "output_dir=/data/runs",
        "pool.address=ray-head:6379",
        "federation.num_clients=3",
        "pool.workers=4",
    ]
    given = deployment_overrides(["pool.workers=1", "pool.address=ray://elsewhere:10001"], stack)
    assert "pool.workers=1" in given and "pool.address=ray://elsewhere:10001" in given
    assert not any(o.startswith("pool.workers=4") for o in given)


def test_nodes_override_gives_every_supernode_its_partition(tmp_path: Path) -> None:
    stack = _stack(tmp_path, supernodes=3, tls=True)
    stack.write_nodes_override()
    text = (tmp_path / NODES_FILE).read_text()
    for i in range(3):
        assert f"supernode-{i}:" in text and f'FEDLEAK_PARTITION_ID: "{i}"' in text
    assert text.count('FEDLEAK_NUM_PARTITIONS: "3"') == 3
    assert "certs:/certs:ro" in text
    assert stack.files()[-1] == tmp_path / NODES_FILE


def test_insecure_connection_config(tmp_path: Path) -> None:
    write_connection(tmp_path, "127.0.0.1:8000", None)
    text = (tmp_path / "config.toml").read_text()
    assert 'default = "fedleak"' in text and "insecure = true" in text


def test_certificates_name_the_superlink(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "docker" / "gen_certs.py"), str(tmp_path), "--san", "10.0.0.7"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(n.value) for n in san}
    assert {"superlink", "localhost", "127.0.0.1", "10.0.0.7"} <= names
    assert oct((tmp_path / "server.key").stat().st_mode & 0o777) == "0o600"


def test_deploy_run_without_a_stack_names_the_fix(tmp_path: Path) -> None:
    proc = fedleak("deploy", "run", env={"FEDLEAK_DEPLOY_DIR": str(tmp_path)})
    assert proc.returncode == 9
    assert "run 'fedleak deploy up'" in proc.stderr


def test_deploy_without_docker_names_the_fix(tmp_path: Path) -> None:
    env = {"FEDLEAK_DEPLOY_DIR": str(tmp_path), "FEDLEAK_DOCKER": str(tmp_path / "no-docker")}
    proc = fedleak("deploy", "up", env=env)
    assert proc.returncode == 9
    assert "fedleak: error:" in proc.stderr and "no-docker" in proc.stderr
