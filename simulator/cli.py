"""The ``fedleak`` command line: ``run`` an experiment, rebuild a ``report``, show a ``config``."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fedleak.simulator import exit_codes
from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.deploy.commands import add_deploy_parser
from fedleak.simulator.errors import FedleakError, causes, fedleak_cause
from fedleak.simulator.runtime.failures import FAILURES_LOG, short_message
from fedleak.simulator.runtime.results import RunPaths


def _load(args: argparse.Namespace) -> tuple[ExperimentConfig, RunPaths | None, int]:
    """The experiment of ``fedleak run`` (fresh or resumed)."""
    from fedleak.simulator.runtime.preflight import check_resume_dir
    from fedleak.simulator.runtime.resume import prepare_resume
    from fedleak.simulator.sweep.runner import sweep_overrides

    if args.resume is None:
        if sweeps := sweep_overrides(args.overrides):
            raise FedleakError(
                f"{' '.join(sweeps)} sweeps several values; add -m (--multirun) to run "
                "every combination: fedleak run -m " + " ".join(args.overrides),
                exit_code=exit_codes.CONFIG_ERROR,
            )
        return load_experiment(args.overrides), None, 1
    if args.overrides:
        raise FedleakError(
            "--resume takes no overrides: the run's config.yaml is used",
            exit_code=exit_codes.CONFIG_ERROR,
        )
    check_resume_dir(Path(args.resume))
    return prepare_resume(Path(args.resume))


def _check_before_start(cfg: ExperimentConfig) -> list[str]:
    """Fail before anything starts when the data, the settings or the machine are not right.

    Returns the start-up warnings (printed here).
    """
    from fedleak.simulator.runtime.experiment_data import (
        attack_names,
        experiment_spec,
        experiment_splits,
    )
    from fedleak.simulator.runtime.preflight import partition_sizes, preflight
    from fedleak.simulator.runtime.setting_warnings import DataFacts, startup_warnings
    from fedleak.simulator.runtime.trainability import check_model_trains

    preflight(cfg)  # paths first: a bad data_dir or weights file is named before any loading
    splits = experiment_splits(cfg)
    check_model_trains(cfg)
    warnings = startup_warnings(cfg, DataFacts(partition_sizes(cfg)))
    notice = attack_names(cfg, experiment_spec(cfg, splits))[1]
    warnings += [notice] if notice else []
    for line in warnings:
        print(f"fedleak: warning: {line}", file=sys.stderr)
    return warnings


def _cmd_run(args: argparse.Namespace) -> int:
    from fedleak.simulator.runtime.rundir import create_run_dir
    from fedleak.simulator.runtime.setting_warnings import write_warnings

    if args.multirun:
        if args.resume is not None:
            raise FedleakError(
                "--resume resumes one run; it does not combine with -m",
                exit_code=exit_codes.CONFIG_ERROR,
            )
        if args.jobs < 1:
            raise FedleakError(
                f"--jobs must be >= 1, got {args.jobs}", exit_code=exit_codes.CONFIG_ERROR
            )
        from fedleak.simulator.sweep.runner import multirun

        return multirun(
            args.overrides, verbose=args.verbose, jobs=args.jobs, ray_address=args.ray_address
        )
    if args.jobs != 1 or args.ray_address is not None:
        raise FedleakError(
            "--jobs and --ray-address run the jobs of a sweep; add -m (--multirun)",
            exit_code=exit_codes.CONFIG_ERROR,
        )
    cfg, paths, start_round = _load(args)
    warnings = _check_before_start(cfg)
    if paths is None:
        paths = create_run_dir(cfg)
        write_warnings(paths.root, warnings)
        print(f"fedleak: experiment {cfg.name!r} -> {paths.root}")
    elif start_round > cfg.federation.rounds:
        print(f"fedleak: {paths.root} completed all {cfg.federation.rounds} rounds")
    else:
        print(f"fedleak: resuming {paths.root} at round {start_round}")
    _simulate(cfg, paths, args.verbose, start_round)
    return exit_codes.OK


def _simulate(cfg: ExperimentConfig, paths: RunPaths, verbose: bool, start_round: int) -> None:
    """Run the simulation; a failure is logged in full and raised as a :class:`FedleakError`
    whose exit code is that of the first FedleakError among its causes (else ``RUN_FAILED``)."""
    from fedleak.simulator.runtime.simulation import run_in_simulation

    try:
        run_in_simulation(cfg, paths, verbose=verbose, start_round=start_round)
    except Exception as exc:
        cause = fedleak_cause(exc)
        log = paths.root / FAILURES_LOG
        with log.open("a", encoding="utf-8") as handle:  # the whole of it, for the record
            handle.write("--- fedleak run failed\n" + "".join(traceback.format_exception(exc)))
        raise FedleakError(
            f"run failed: {short_message(_root_cause(exc), log)}",
            exit_code=exit_codes.RUN_FAILED if cause is None else cause.exit_code,
            hint=f"rows written so far are in {paths.root} (rebuild its report with: "
            f"fedleak report {paths.root})",
        ) from exc


def _root_cause(exc: BaseException) -> str:
    last = list(causes(exc))[-1]
    return f"{type(last).__name__}: {last}"


def _cmd_report(args: argparse.Namespace) -> int:
    from fedleak.simulator.report.build import build_report
    from fedleak.simulator.runtime.results import RunPaths

    paths = RunPaths(Path(args.run_dir))
    if not paths.leakage_jsonl.is_file() and not paths.config.is_file():
        raise FedleakError(
            f"{paths.root} is not a fedleak run directory (no leakage.jsonl or config.yaml)",
            exit_code=exit_codes.RUN_DIR_INVALID,
        )
    print(build_report(paths))
    return exit_codes.OK


def _cmd_sweep_report(args: argparse.Namespace) -> int:
    from fedleak.simulator.sweep.summary import build_sweep_report

    sweep_dir = Path(args.sweep_dir)
    if not any(sweep_dir.glob("job-*/job.json")):
        raise FedleakError(
            f"{sweep_dir} is not a fedleak sweep directory", exit_code=exit_codes.RUN_DIR_INVALID
        )
    print(build_sweep_report(sweep_dir))
    return exit_codes.OK


def _cmd_config(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.overrides)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return exit_codes.OK


def _cmd_list(args: argparse.Namespace) -> int:
    from fedleak.simulator.catalog import catalog, format_catalog

    print(format_catalog(catalog(args.kind)))
    return exit_codes.OK


def version_line() -> str:
    """``fedleak X (flwr Y, torch Z, ray W)``: what ``fedleak --version`` prints."""
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    deps = ", ".join(f"{name} {of(name)}" for name in ("flwr", "torch", "ray"))
    return f"fedleak {of('fedleak')} ({deps})"


def _add_list_parser(sub: Any) -> None:
    from fedleak.simulator.catalog import CATALOGS

    listing = sub.add_parser(
        "list", help="list the attacks, models, data sets or defenses, with what each needs"
    )
    listing.add_argument("kind", choices=sorted(CATALOGS))
    listing.set_defaults(func=_cmd_list)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="fedleak", description=__doc__)
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment in simulation (Hydra overrides: key=value)")
    run.add_argument("overrides", nargs="*", help="e.g. model=lenet federation.rounds=5")
    run.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    run.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a killed run from its last completed round"
    )
    run.add_argument(
        "-m", "--multirun", action="store_true", help="sweep: run every combination (a=1,2 b=x,y)"
    )
    run.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="with -m: run N sweep jobs at once (default 1)",
    )
    run.add_argument(
        "--ray-address",
        metavar="URL",
        help="with -m: submit every job to the Ray cluster whose job server is at URL "
        "(e.g. http://head:8265) instead of running it here",
    )
    run.set_defaults(func=_cmd_run)
    sweep_report = sub.add_parser("sweep-report", help="rebuild the summary of a sweep directory")
    sweep_report.add_argument("sweep_dir")
    sweep_report.set_defaults(func=_cmd_sweep_report)
    report = sub.add_parser("report", help="rebuild the summary, CSVs and grids of a run directory")
    report.add_argument("run_dir")
    report.set_defaults(func=_cmd_report)
    config = sub.add_parser("config", help="print the resolved, validated config")
    config.add_argument("overrides", nargs="*")
    config.set_defaults(func=_cmd_config)
    _add_list_parser(sub)
    add_deploy_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedleak`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except FedleakError as exc:  # the one place an error becomes a message and an exit code
        print(f"fedleak: error: {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())


def console_main() -> None:
    """Console-script wrapper: exit with :func:`main`'s code.

    A failed simulation can leave Flower's non-daemon ServerApp thread waiting for nodes
    that are gone; after a failure the process exits without joining such threads.
    """
    code = main()
    if code != exit_codes.OK:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
