"""The deployment's processes without containers, on 127.0.0.1, with TLS made on the fly.

A SuperLink (the ServerApp in a subprocess), two SuperNodes, a Ray head and one attack
worker node (``ray start`` with the attack-worker resource), all as plain processes that
this module starts in their own sessions and stops by process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.deploy import flower as fl
from fedleak.simulator.record_keys import ATTACK_WORKER_SLOT
from tests.deploy.conftest import EXPERIMENT, REPO
from tests.deploy.schema import assert_same_schema, row_keys

pytestmark = [pytest.mark.slow, pytest.mark.deploy]

BIN = Path(sys.executable).parent
GEN_CERTS = REPO / "docker" / "gen_certs.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Processes:
    """Processes started here, each in its own session (stopped by process group)."""

    logs: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *cmd: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    @staticmethod
    def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        """Signal the process group this module started (children may outlive the leader)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def stop_all(self) -> None:
        for proc in reversed(self.procs.values()):
            self.signal_group(proc, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=30)


@dataclass(frozen=True)
class Loopback:
    """The running loopback deployment."""

    procs: Processes
    flwr_home: Path
    certs: Path
    superlink: str
    ray_address: str
    work: Path


def _make_certs(out: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(GEN_CERTS), str(out)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    work = tmp_path_factory.mktemp("loopback")
    certs = work / "certs"
    _make_certs(certs)
    # Ray's unix sockets live under its temp dir: pytest's tmp paths are too long for them
    ray_tmp = Path(tempfile.mkdtemp(prefix="deploy-ray-", dir="/tmp"))
    env = {
        **fl.flwr_env(work / "flwr-server"),
        "PYTHONPATH": str(REPO),
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    procs = Processes(work, env)
    port, ray_port, ray_client = _free_port(), _free_port(), _free_port()
    superlink = f"127.0.0.1:{port}"
    tls = ["--ssl-ca-certfile", str(certs / "ca.crt"), "--ssl-certfile", str(certs / "server.crt"),
           "--ssl-keyfile", str(certs / "server.key")]  # fmt: skip
    try:
        procs.start(
            "superlink", str(BIN / "flower-superlink"), *tls, "--host", "127.0.0.1",
            "--port", str(port), "--disable-runtime-dependency-installation",
        )  # fmt: skip
        for i in range(2):
            procs.start(
                f"supernode-{i}", str(BIN / "flower-supernode"), "--superlink", superlink,
                "--root-certificates", str(certs / "ca.crt"), "--port", str(_free_port()),
                "--node-config", f"partition-id={i} num-partitions=2",
            )  # fmt: skip
        procs.start(
            "ray-head", str(BIN / "ray"), "start", "--head", "--block", f"--port={ray_port}",
            "--node-ip-address=127.0.0.1", "--num-cpus=0", "--include-dashboard=false",
            f"--ray-client-server-port={ray_client}", f"--temp-dir={ray_tmp}",
            "--disable-usage-stats",
        )  # fmt: skip
        time.sleep(5)  # the worker node joins a head that is listening
        procs.start(
            "attack-worker", str(BIN / "ray"), "start", "--block",
            f"--address=127.0.0.1:{ray_port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
            f'--resources={{"{ATTACK_WORKER_SLOT}": 1}}', "--disable-usage-stats",
        )  # fmt: skip
        home = work / "flwr-cli"
        fl.write_connection(home, superlink, certs / "ca.crt")
        fl.wait_for_nodes(home, 2, timeout_s=120)
        yield Loopback(procs, home, certs, superlink, f"127.0.0.1:{ray_port}", work)
    finally:
        procs.stop_all()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def loopback_run(loopback: Loopback) -> Path:
    out = loopback.work / "runs"
    overrides = [f"output_dir={out}", f"pool.address={loopback.ray_address}"]
    cfg = load_experiment([*EXPERIMENT, *overrides])
    run_config = fl.write_run_config(loopback.work / "run_config.toml", cfg)
    start = time.monotonic()
    fl.run_app(loopback.flwr_home, REPO, run_config, timeout_s=600, echo=False)
    print(f"loopback 2-round run: {time.monotonic() - start:.1f} s")
    (run_dir,) = (out / cfg.name).iterdir()
    return run_dir


def test_loopback_run_records_leakage_like_a_simulation(
    loopback_run: Path, simulation_run: Path
) -> None:
    rows = assert_same_schema(loopback_run, simulation_run)
    assert len(rows) == 2 * 2  # 2 rounds x 2 clients x analytic
    assert all(r["status"] == "ok" and r["psnr_min"] >= 60.0 for r in rows)
    assert row_keys(loopback_run) == row_keys(simulation_run)


def test_supernode_with_another_root_certificate_cannot_join(loopback: Loopback) -> None:
    other = loopback.work / "other-ca"
    _make_certs(other)
    proc = loopback.procs.start(
        "wrong-ca-supernode", str(BIN / "flower-supernode"), "--superlink", loopback.superlink,
        "--root-certificates", str(other / "ca.crt"), "--port", str(_free_port()),
        "--node-config", "partition-id=0 num-partitions=2",
        "--max-retries", "3", "--max-wait-time", "20",
    )  # fmt: skip
    try:
        returncode = proc.wait(timeout=120)
    finally:  # its SuperExec child may outlive it
        Processes.signal_group(proc, signal.SIGTERM)
    log = loopback.procs.log("wrong-ca-supernode")
    assert returncode != 0, log[-2000:]
    assert "SuperNode ID" not in log
    assert fl.online_nodes(loopback.flwr_home) == 2  # only the two with the right CA
