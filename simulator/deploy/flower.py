"""Talk to a running SuperLink with Flower's CLI: connection, online nodes, ``flwr run``.

Used by ``fedleak deploy`` against the compose stack, and by the loopback tests against
plain processes. Every call runs ``flwr`` with ``FLWR_HOME`` set to a directory holding
one connection, ``fedleak``, in its ``config.toml``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import tomli_w

from fedleak.simulator import exit_codes
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.errors import FedleakError

CONNECTION = "fedleak"
_RUN_ID = re.compile(r"Successfully started run (\d+)")


class FlowerCommandError(FedleakError, RuntimeError):
    """``flwr`` failed or the run did not complete (the message carries its output)."""

    exit_code = exit_codes.DEPLOY_ERROR


def flwr_executable() -> str:
    """``flwr`` beside this Python (the venv's), else the name for PATH lookup."""
    beside = Path(sys.executable).parent / "flwr"
    return str(beside) if beside.exists() else "flwr"


def write_connection(flwr_home: Path, address: str, root_certificates: Path | None) -> None:
    """``$FLWR_HOME/config.toml`` with the default connection to ``address``.

    ``root_certificates=None`` means an insecure (plain HTTP) connection.
    """
    conn: dict[str, Any] = {"address": address}
    if root_certificates is None:
        conn["insecure"] = True
    else:
        conn["root-certificates"] = str(root_certificates.resolve())
    flwr_home.mkdir(parents=True, exist_ok=True)
    text = tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: conn}})
    (flwr_home / "config.toml").write_text(text)


def flwr_env(flwr_home: Path) -> dict[str, str]:
    """Environment for ``flwr``: its home, no telemetry, no runtime ``uv sync``."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {
        **os.environ,
        "PATH": path,
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    }


def _flwr(flwr_home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [flwr_executable(), *args],
        capture_output=True,
        text=True,
        env=flwr_env(flwr_home),
        timeout=timeout,
    )


def online_nodes(flwr_home: Path) -> int:
    """SuperNodes the SuperLink reports ``online`` (0 when it does not answer)."""
    proc = _flwr(flwr_home, "supernode", "list", CONNECTION, "--format", "json")
    try:
        nodes = json.loads(proc.stdout).get("nodes", [])
    except json.JSONDecodeError:
        return 0
    return sum(1 for node in nodes if node.get("status") == "online")


def wait_for_nodes(flwr_home: Path, count: int, timeout_s: float) -> None:
    """Poll until ``count`` SuperNodes are online (SuperNodes register seconds late)."""
    deadline = time.monotonic() + timeout_s
    online = 0
    while time.monotonic() < deadline:
        online = online_nodes(flwr_home)
        if online >= count:
            return
        time.sleep(2)
    raise FlowerCommandError(
        f"{online} of {count} SuperNodes online after {timeout_s:.0f} s; check their logs "
        "(fedleak deploy logs) for connection or certificate errors"
    )


def write_run_config(path: Path, cfg: ExperimentConfig) -> Path:
    """A TOML run-config file carrying the resolved experiment as ``experiment-json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({keys.EXPERIMENT_JSON: json.dumps(cfg.to_dict())}))
    return path


def run_app(
    flwr_home: Path, app_dir: Path, run_config: Path, timeout_s: float, echo: bool = True
) -> tuple[str, str]:
    """``flwr run APP fedleak --run-config FILE --stream``; returns (run id, output).

    Raises :class:`FlowerCommandError` unless the run finished ``completed``.
    """
    cmd = [flwr_executable(), "run", str(app_dir), CONNECTION, "--run-config", str(run_config)]
    proc = subprocess.Popen(
        [*cmd, "--stream"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=flwr_env(flwr_home),
    )
    lines: list[str] = []
    assert proc.stdout is not None
    timer = threading.Timer(timeout_s, proc.kill)  # the stream ends when the run does
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
        proc.wait()
    finally:
        timer.cancel()
    output = "".join(lines)
    match = _RUN_ID.search(output)
    if match is None:
        raise FlowerCommandError(f"flwr run did not start a run:\n{output[-2000:]}")
    run_id = match.group(1)
    status = run_status(flwr_home, run_id)
    if status != "finished:completed":
        raise FlowerCommandError(f"run {run_id} ended {status!r}:\n{output[-2000:]}")
    return run_id, output


def run_status(flwr_home: Path, run_id: str) -> str:
    """The SuperLink's status of ``run_id``, e.g. ``finished:completed``."""
    proc = _flwr(flwr_home, "ls", CONNECTION, "--run-id", run_id, "--format", "json")
    try:
        runs = json.loads(proc.stdout).get("runs", [])
    except json.JSONDecodeError:
        return f"unknown ({proc.stdout.strip()[-300:]})"
    return str(runs[0].get("status", "unknown")) if runs else "unknown"
