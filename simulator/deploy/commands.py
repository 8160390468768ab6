"""``fedleak deploy build|up|run|status|logs|down``: the multi-container deployment.

``up`` starts the compose stack (SuperLink, SuperNodes, the ServerApp's SuperExec, a Ray
head and attack workers) and waits until every SuperNode is online; ``run`` takes the same
Hydra overrides as ``fedleak run``, submits the resolved experiment with ``flwr run`` and
copies the run directory out of the results volume; ``down`` removes the containers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from fedleak.simulator import exit_codes
from fedleak.simulator.deploy.compose_stack import (
    CONTAINER_RUNS,
    CPU_IMAGE,
    CUDA_IMAGE,
    RAY_HEAD_ADDRESS,
    DeployError,
    Stack,
    check_daemon,
    docker_client,
    has_gpus,
)
from fedleak.simulator.deploy.flower import FlowerCommandError
from fedleak.simulator.deploy.images import image_id

REPO = Path(__file__).resolve().parents[2]


def _state_dir() -> Path:
    return Path(os.environ.get("FEDLEAK_DEPLOY_DIR", "runs/.deploy")).resolve()


def _flwr_home(stack: Stack) -> Path:
    return Path(stack.state_dir) / "flwr"


def _cmd_build(args: argparse.Namespace) -> int:
    from fedleak.simulator.deploy.images import build_image, prepare_wheelhouse

    check_daemon()
    tag = args.tag or (CUDA_IMAGE if args.cuda else CPU_IMAGE)
    print("fedleak: preparing the wheelhouse (pip download) ...", flush=True)
    prepare_wheelhouse(REPO, cuda=args.cuda)
    print(f"fedleak: building {tag} ...", flush=True)
    dockerfile = "docker/Dockerfile.cuda" if args.cuda else "docker/Dockerfile.cpu"
    superseded = build_image(docker_client(), REPO, tag, dockerfile, args.base_image)
    print(f"fedleak: built {tag}")
    if superseded:
        print(f"fedleak: {superseded}")
    return exit_codes.OK


def _cmd_up(args: argparse.Namespace) -> int:
    from fedleak.simulator.deploy.flower import wait_for_nodes, write_connection

    if args.supernodes < 2:
        raise DeployError("--supernodes must be 2 or more (the base compose file defines two)")
    check_daemon()
    gpu = has_gpus() if args.gpu is None else args.gpu
    stack = Stack(
        repo=str(REPO),
        state_dir=str(_state_dir()),
        project=args.project,
        tls=args.tls,
        supernodes=args.supernodes,
        workers=args.workers,
        worker_slots=args.worker_slots,
        gpu=gpu,
        port=args.port,
    )
    if image_id(docker_client(), stack.image) is None:
        hint = "fedleak deploy build --cuda" if gpu else "fedleak deploy build"
        raise DeployError(f"image {stack.image} not found: build it first with '{hint}'")
    if not args.tls:
        print("fedleak: WARNING: insecure deployment (no TLS), for local use only; --tls for TLS")
    stack.write_nodes_override()
    stack.save()
    stack.compose("up", "-d", "--scale", f"attack-worker={args.workers}")
    home = _flwr_home(stack)
    ca = None
    if args.tls:  # the flwr CLI on this host verifies the SuperLink with the stack's CA
        ca = Path(stack.state_dir) / "ca.crt"
        _copy_from(stack, "superlink", "/certs/ca.crt", ca)
    write_connection(home, f"127.0.0.1:{args.port}", ca)
    print(f"fedleak: waiting for {args.supernodes} SuperNodes ...", flush=True)
    wait_for_nodes(home, args.supernodes, args.timeout)
    print(f"fedleak: deployment {args.project!r} up: {args.supernodes} SuperNodes online")
    return exit_codes.OK


def _copy_from(stack: Stack, service: str, src: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [docker_client(), "cp", f"{stack.container(service)}:{src}", str(dest)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise DeployError(f"docker cp {service}:{src} failed: {proc.stderr.strip()}")


def _given(overrides: list[str], key: str) -> str | None:
    """The value of ``key=...`` among the overrides (the last one wins), else ``None``."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key]
    return values[-1] if values else None


def deployment_overrides(overrides: list[str], stack: Stack) -> list[str]:
    """``overrides`` plus what the stack fixes: output in the volume, Ray head, node count."""
    fixed = [f"output_dir={CONTAINER_RUNS}"]
    if _given(overrides, "pool.address") is None:
        fixed.append(f"pool.address={RAY_HEAD_ADDRESS}")
    if _given(overrides, "federation.num_clients") is None:
        fixed.append(f"federation.num_clients={stack.supernodes}")
    if _given(overrides, "pool.workers") is None:
        fixed.append(f"pool.workers={stack.workers * stack.worker_slots}")
    return [o for o in overrides if _given([o], "output_dir") is None] + fixed


def _run_dirs(stack: Stack, name: str) -> set[str]:
    proc = stack.compose(
        "exec", "-T", "serverapp", "ls", "-1", f"{CONTAINER_RUNS}/{name}", check=False
    )
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def _cmd_run(args: argparse.Namespace) -> int:
    from fedleak.simulator.config.compose import load_experiment
    from fedleak.simulator.deploy.flower import run_app, wait_for_nodes, write_run_config

    stack = Stack.load(_state_dir())
    host_out = Path(_given(args.overrides, "output_dir") or "runs")
    cfg = load_experiment(deployment_overrides(args.overrides, stack))
    if cfg.federation.num_clients != stack.supernodes:
        raise DeployError(
            f"federation.num_clients={cfg.federation.num_clients} but the deployment has "
            f"{stack.supernodes} SuperNodes: drop the override or 'deploy up --supernodes N'"
        )
    home = _flwr_home(stack)
    wait_for_nodes(home, stack.supernodes, args.timeout)
    before = _run_dirs(stack, cfg.name)
    run_config = write_run_config(Path(stack.state_dir) / "run_config.toml", cfg)
    try:
        run_id, _ = run_app(home, REPO, run_config, args.timeout)
    except FlowerCommandError as exc:
        exc.hint = "the containers' logs: fedleak deploy logs serverapp ray-head"
        raise
    new = sorted(_run_dirs(stack, cfg.name) - before)
    if not new:
        raise DeployError(f"run {run_id} finished but left no run directory in the results volume")
    dest = host_out / cfg.name / new[-1]
    _copy_from(stack, "serverapp", f"{CONTAINER_RUNS}/{cfg.name}/{new[-1]}", dest)
    print(f"fedleak: run {run_id} completed; results in {dest}")
    return exit_codes.OK


def _cmd_status(args: argparse.Namespace) -> int:
    from fedleak.simulator.deploy.flower import online_nodes

    stack = Stack.load(_state_dir())
    print(stack.compose("ps").stdout, end="")
    print(f"SuperNodes online: {online_nodes(_flwr_home(stack))} of {stack.supernodes}")
    return exit_codes.OK


def _cmd_logs(args: argparse.Namespace) -> int:
    stack = Stack.load(_state_dir())
    stack.compose("logs", "--tail", str(args.tail), *args.services, capture=False)
    return exit_codes.OK


def _cmd_down(args: argparse.Namespace) -> int:
    stack = Stack.load(_state_dir())
    stack.compose("down", *(["-v"] if args.volumes else []), "--remove-orphans")
    (Path(stack.state_dir) / "stack.json").unlink(missing_ok=True)
    print(f"fedleak: deployment {stack.project!r} down" + (" (volumes removed)" * args.volumes))
    return exit_codes.OK


def _guarded(func: Any) -> Any:
    """``func`` with the timeouts of docker, compose, flwr and pip raised as DeployError."""

    def run(args: argparse.Namespace) -> int:
        try:
            code: int = func(args)
        except subprocess.TimeoutExpired as exc:
            raise DeployError(str(exc)) from exc
        return code

    return run


def add_deploy_parser(sub: Any) -> None:
    """Add ``fedleak deploy ...`` to the CLI's subparsers."""
    deploy = sub.add_parser("deploy", help="multi-container deployment (docker compose)")
    verbs = deploy.add_subparsers(dest="verb", required=True)
    build = verbs.add_parser("build", help="prepare the wheelhouse and build the image")
    build.add_argument(
        "--base-image", help="BASE_IMAGE build argument (default python:3.11.11-slim-bookworm)"
    )
    build.add_argument("--tag", help="image tag (default fedleak:cpu, or fedleak:cuda)")
    build.add_argument("--cuda", action="store_true", help="build fedleak:cuda instead")
    build.set_defaults(func=_guarded(_cmd_build))
    up = verbs.add_parser("up", help="start the stack and wait until every SuperNode is online")
    up.add_argument("--tls", action="store_true", help="TLS with a generated CA")
    up.add_argument("--supernodes", type=int, default=2)
    up.add_argument("--workers", type=int, default=1, help="attack-worker containers")
    up.add_argument("--worker-slots", type=int, default=1, help="attack workers per container")
    gpu = up.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", action="store_true", default=None, help="GPU attack workers")
    gpu.add_argument("--no-gpu", dest="gpu", action="store_false")
    up.add_argument("--port", type=int, default=8000, help="SuperLink port on this host")
    up.add_argument("--project", default=os.environ.get("FEDLEAK_PROJECT", "fedleak"))
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for SuperNodes")
    up.set_defaults(func=_guarded(_cmd_up))
    run = verbs.add_parser("run", help="run an experiment on the stack (Hydra overrides)")
    run.add_argument("overrides", nargs="*", help="as for fedleak run")
    run.add_argument("--timeout", type=float, default=3600, help="seconds the run may take")
    run.set_defaults(func=_guarded(_cmd_run))
    status = verbs.add_parser("status", help="containers and online SuperNodes")
    status.set_defaults(func=_guarded(_cmd_status))
    logs = verbs.add_parser("logs", help="the containers' logs")
    logs.add_argument("services", nargs="*")
    logs.add_argument("--tail", type=int, default=100)
    logs.set_defaults(func=_guarded(_cmd_logs))
    down = verbs.add_parser("down", help="stop and remove the containers")
    down.add_argument("--volumes", action="store_true", help="also delete results and certs")
    down.set_defaults(func=_guarded(_cmd_down))
