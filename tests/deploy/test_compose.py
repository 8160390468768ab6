"""The multi-container deployment for real: image, TLS stack up, a 2-round run, teardown.

Uses ``fedleak deploy`` exactly as the README does, with its own compose project name and
SuperLink port, and a deploy directory under pytest's tmp path.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedleak.simulator.deploy.compose_stack import Stack
from fedleak.simulator.deploy.flower import online_nodes
from fedleak.simulator.deploy.images import build_image, image_id
from tests.deploy.conftest import EXPERIMENT, TIMINGS, fedleak
from tests.deploy.schema import assert_same_schema, row_keys

pytestmark = [pytest.mark.slow, pytest.mark.deploy]


@dataclass(frozen=True)
class Deployment:
    """A stack that ``fedleak deploy up --tls`` brought up."""

    env: dict[str, str]
    stack: Stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def deployment(
    fedleak_image: str, docker_engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    state = tmp_path_factory.mktemp("deploy")
    env = {"FEDLEAK_DOCKER": docker_engine, "FEDLEAK_DEPLOY_DIR": str(state)}
    project = f"fedleak-test-{int(time.time())}"
    start = time.monotonic()
    up = fedleak(
        "deploy", "up", "--tls", "--project", project, "--port", str(_free_port()),
        "--no-gpu", "--timeout", "240", env=env, timeout=600,
    )  # fmt: skip
    TIMINGS["stack up (TLS, nodes online)"] = time.monotonic() - start
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield Deployment(env, Stack.load(state))
    finally:
        down = fedleak("deploy", "down", "--volumes", env=env, timeout=300)
        if up.returncode == 0:
            assert down.returncode == 0, down.stderr[-2000:]
        else:  # up failed half way: remove whatever it created
            Stack.load(state).compose("down", "-v", "--remove-orphans", check=False)


@pytest.fixture(scope="module")
def deployed_run(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deployed-runs")
    start = time.monotonic()
    proc = fedleak("deploy", "run", *EXPERIMENT, f"output_dir={out}", env=deployment.env)
    TIMINGS["2-round run (compose)"] = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-12000:] + proc.stderr[-3000:]
    (run_dir,) = (c.parent for c in out.glob("*/*/config.yaml"))  # named by its settings
    return run_dir


def test_every_supernode_online_with_tls(deployment: Deployment) -> None:
    home = Path(deployment.stack.state_dir) / "flwr"
    assert online_nodes(home) == 2
    assert "root-certificates" in (home / "config.toml").read_text()


def test_leakage_rows_in_the_results_volume(deployment: Deployment, deployed_run: Path) -> None:
    # read them where the ServerApp wrote them: inside the volume, not the host copy
    path = f"/data/runs/{deployed_run.parent.name}/{deployed_run.name}/leakage.jsonl"
    cat = deployment.stack.compose("exec", "-T", "serverapp", "cat", path)
    rows = [json.loads(line) for line in cat.stdout.splitlines() if line.strip()]
    assert len(rows) == 2 * 2  # 2 rounds x 2 SuperNodes x analytic
    assert all(r["status"] == "ok" and r["psnr_min"] >= 60.0 for r in rows)
    assert all(r["client"] in (0, 1) for r in rows)  # audit store shared with the SuperNodes
    assert (deployed_run / "leakage.jsonl").read_text() == cat.stdout


def test_deployed_rows_match_a_simulation_in_schema(
    deployed_run: Path, simulation_run: Path
) -> None:
    assert_same_schema(deployed_run, simulation_run)
    assert row_keys(deployed_run) == row_keys(simulation_run)


def test_attacks_ran_in_the_attack_worker_container(
    deployment: Deployment, deployed_run: Path
) -> None:
    worker = deployment.stack.container("attack-worker")
    rows = [json.loads(line) for line in (deployed_run / "leakage.jsonl").read_text().splitlines()]
    # a row's worker is "<hostname>:<pid>"; a container's hostname is its short id
    assert {r["worker"].split(":")[0] for r in rows} == {worker[:12]}


def test_supernode_with_another_root_certificate_cannot_join(deployment: Deployment) -> None:
    script = (
        "python3 /opt/fedleak/docker/gen_certs.py /tmp/other >/dev/null && exec "
        "flower-supernode --superlink superlink:8000 --root-certificates /tmp/other/ca.crt "
        "--node-config 'partition-id=0 num-partitions=2' --max-retries 3 --max-wait-time 20"
    )
    proc = deployment.stack.compose(
        "run", "--rm", "--no-deps", "supernode-0", "sh", "-c", script, check=False, timeout=180
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "SuperNode ID" not in proc.stdout + proc.stderr
    assert online_nodes(Path(deployment.stack.state_dir) / "flwr") == 2


def test_tls_supernode_without_certificates_says_what_is_missing(deployment: Deployment) -> None:
    proc = deployment.stack.compose(
        "run", "--rm", "--no-deps", "-e", "FEDLEAK_CERTS_DIR=/nowhere", "supernode-1", "supernode",
        check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "/nowhere/ca.crt is missing" in proc.stderr + proc.stdout


def test_insecure_supernode_warns_loudly_and_cannot_join_tls(deployment: Deployment) -> None:
    proc = deployment.stack.compose(
        "run", "--rm", "--no-deps", "-e", "FEDLEAK_TLS=0", "supernode-1", "supernode",
        "--max-retries", "2", "--max-wait-time", "15", check=False, timeout=120,
    )  # fmt: skip
    assert "WARNING: INSECURE MODE" in proc.stderr + proc.stdout
    assert proc.returncode != 0
    assert online_nodes(Path(deployment.stack.state_dir) / "flwr") == 2


def test_rebuilding_a_tag_removes_the_image_it_replaced(
    docker_engine: str, base_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY stamp /stamp\n")
    tag = f"fedleak-test-rebuild:{int(time.time())}"
    made: list[str] = []  # containers and images to remove, pass or fail

    def build(stamp: str) -> tuple[str | None, str]:
        (tmp_path / "stamp").write_text(stamp)
        said = build_image(docker_engine, tmp_path, tag, "Dockerfile", base_image)
        current = image_id(docker_engine, tag)
        assert current is not None
        made.append(current)
        return said, current

    def short(image: str) -> str:
        return image.removeprefix("sha256:")[:12]

    try:
        said, first = build("one")
        assert said is None  # nothing to replace
        said, again = build("one")
        assert (said, again) == (None, first)  # same content, same image: nothing removed
        said, second = build("two")
        assert said == f"removed {short(first)}, the image {tag} named before"
        assert image_id(docker_engine, first) is None
        create = [docker_engine, "create", second, "true"]
        made.insert(0, subprocess.run(create, capture_output=True, text=True, check=True).stdout)
        said, third = build("three")
        assert third != second and said is not None and said.startswith(f"kept {short(second)}")
        assert image_id(docker_engine, second) == second  # a container uses it: kept
    finally:
        for thing in made:
            subprocess.run([docker_engine, "rm", thing.strip()], capture_output=True)
            subprocess.run([docker_engine, "image", "rm", thing.strip()], capture_output=True)
