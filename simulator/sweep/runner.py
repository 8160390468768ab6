"""Hydra multirun sweeps: expand, validate every combination, run each, summarise.

``fedleak run -m defense=none,dp defense.dp.noise=0.01,0.1 seed=0,1,2`` expands the
overrides the way Hydra's ``BasicSweeper`` does (cartesian product of the sweep overrides,
in command-line order), composes and validates every combination before any runs, drops
combinations whose effective experiment repeats an earlier one (settings of a disabled
defense do not matter), and runs each remaining one as an ordinary ``fedleak run`` in its own
process, so every run initialises and shuts down Ray and Flower on its own: ``--jobs N`` of
them at once on this machine, or as Ray jobs on a cluster (``--ray-address``,
:mod:`fedleak.simulator.sweep.launch`).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedleak.simulator.config.schema import UPDATE_DEFENSES, ConfigError, ExperimentConfig
from fedleak.simulator.errors import FedleakError
from fedleak.simulator.sweep.launch import Launcher, RayJobLauncher, subprocess_launcher

__all__ = ["Launcher", "multirun", "plan_sweep", "run_sweep", "subprocess_launcher"]

SEED_KEY = "seed"
PLACEMENT_KEYS = ("output_dir",)
"""Where a run is written, not what it is: a sweep sets it per job."""
JOB_FILE = "job.json"
SWEEP_FILE = "sweep.json"


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return list(OverridesParser.create().parse_overrides(list(overrides)))
    except HydraException as exc:
        raise ConfigError([f"overrides {list(overrides)}: {str(exc).splitlines()[0]}"]) from exc


def sweep_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that sweep (``a=1,2``, ``range(...)``, ``choice(...)``); [] if unparsable."""
    try:
        return [o.input_line for o in _parse(overrides) if o.is_sweep_override()]
    except ConfigError:
        return []


def expand_overrides(overrides: Sequence[str]) -> list[list[str]]:
    """All combinations of ``overrides``, as Hydra's ``BasicSweeper`` orders them.

    A later override of the same key replaces an earlier one. List values such as
    ``defense=[dp,prune]`` are one value; ``defense=[dp,prune],[none]`` sweeps two lists.

    Raises
    ------
    ConfigError
        For unparsable overrides and sweeps that cannot be enumerated (``interval``, ``glob``).
    """
    choices: dict[str, list[str]] = {}
    problems = []
    for override in _parse(overrides):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [override.input_line]
        elif not override.is_discrete_sweep() or "GLOB" in str(override.value_type):
            problems.append(
                f"{override.input_line}: {override.value_type.name} cannot be enumerated; "
                "use a list a,b,c or range(start,stop[,step])"
            )
        else:
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
    if problems:
        raise ConfigError(problems)
    return [list(combo) for combo in itertools.product(*choices.values())]


def effective_experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    """``cfg`` minus what cannot change the run: disabled defenses' and unused attacks' settings."""
    data = cfg.to_dict()
    for key in PLACEMENT_KEYS:
        data.pop(key)
    for name, settings in data["defense"].items():
        if name in UPDATE_DEFENSES and not settings["enabled"]:
            data["defense"][name] = {"enabled": False}
    data["attack"]["params"] = {
        k: v for k, v in data["attack"]["params"].items() if k in cfg.attack.names
    }
    return data


def _relevant(override: str, cfg: ExperimentConfig) -> bool:
    """False for placement and for an override that sets a disabled defense or an unused attack."""
    parts = override.split("=", 1)[0].lstrip("+~").split(".")
    if parts[0] in PLACEMENT_KEYS:
        return False
    if len(parts) >= 3 and parts[0] == "defense" and parts[1] in UPDATE_DEFENSES:
        return bool(getattr(cfg.defense, parts[1]).enabled)
    if len(parts) >= 3 and parts[:2] == ["attack", "params"]:
        return parts[2] in cfg.attack.names
    return True


@dataclass(frozen=True)
class SweepJob:
    """One combination to run: its overrides and what identifies its setting."""

    index: int
    overrides: list[str]
    seed: int
    setting: list[str]
    """The overrides that matter, minus ``seed``: runs differing only in seed share it."""
    cfg: ExperimentConfig


@dataclass
class SweepPlan:
    """Validated combinations to run, and those dropped as repeats of an earlier one."""

    overrides: list[str]
    jobs: list[SweepJob] = field(default_factory=list)
    dropped: list[tuple[list[str], int]] = field(default_factory=list)
    """(overrides, index of the job whose experiment it repeats)."""


def plan_sweep(overrides: Sequence[str]) -> SweepPlan:
    """Expand, compose and validate every combination; drop repeats.

    Raises
    ------
    ConfigError
        One error listing every combination that does not compose or validate, with its
        problems, before anything runs.
    """
    from fedleak.simulator.config.compose import load_experiment

    combos = expand_overrides(overrides)
    plan = SweepPlan(overrides=list(overrides))
    problems: list[str] = []
    seen: dict[str, int] = {}
    for combo in combos:
        try:
            cfg = load_experiment(combo)
        except ConfigError as exc:
            problems.append(f"[{' '.join(combo)}]: " + "; ".join(exc.problems))
            continue
        key = json.dumps(effective_experiment(cfg), sort_keys=True, default=str)
        if key in seen:
            plan.dropped.append((combo, seen[key]))
            continue
        seen[key] = len(plan.jobs)
        setting = [
            o for o in combo if o.split("=", 1)[0].lstrip("+~") != SEED_KEY and _relevant(o, cfg)
        ]
        plan.jobs.append(SweepJob(len(plan.jobs), combo, cfg.seed, setting, cfg))
    if problems:
        raise ConfigError(
            [f"{len(problems)} of {len(combos)} sweep combinations are invalid:", *problems]
        )
    return plan


def _quote(value: str) -> str:
    """A Hydra-safe quoted string (paths may hold characters the grammar reserves)."""
    return "'" + value.replace("'", "\\'") + "'"


def write_job(job_dir: Path, record: dict[str, Any]) -> None:
    """Write ``job.json`` atomically (a killed sweep leaves the previous version)."""
    tmp = job_dir / (JOB_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    tmp.replace(job_dir / JOB_FILE)


def create_sweep_dir(plan: SweepPlan, now: dt.datetime | None = None) -> Path:
    """``<output_dir>/<name>/sweep-<timestamp>/`` of the first job, with ``sweep.json``."""
    first = plan.jobs[0].cfg
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S-%f")
    root = Path(first.output_dir).resolve() / first.name / f"sweep-{stamp}"
    root.mkdir(parents=True, exist_ok=False)
    record = {
        "overrides": plan.overrides,
        "jobs": [job.overrides for job in plan.jobs],
        "dropped": [{"overrides": o, "same_as_job": i} for o, i in plan.dropped],
    }
    (root / SWEEP_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return root


def _job_dir(sweep_dir: Path, job: SweepJob) -> Path:
    return sweep_dir / f"job-{job.index:03d}"


def _run_job(
    job: SweepJob, sweep_dir: Path, launch: Launcher, interrupted: threading.Event
) -> dict[str, Any]:
    """Run one job into its directory; its final ``job.json`` record."""
    from fedleak.simulator.sweep.summary import dp_epsilon

    job_dir = _job_dir(sweep_dir, job)
    job_dir.mkdir()
    record: dict[str, Any] = {
        "index": job.index,
        "overrides": job.overrides,
        "setting": job.setting,
        "seed": job.seed,
        "epsilon": dp_epsilon(job.cfg),
        "status": "running",
        "started_at": dt.datetime.now().isoformat(timespec="milliseconds"),
    }
    write_job(job_dir, record)
    start = time.monotonic()
    try:
        code = launch([*job.overrides, f"output_dir={_quote(str(job_dir))}"], job_dir)
    except Exception as exc:  # the launcher itself broke: record it, go on
        record["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    runs = sorted(p.parent for p in job_dir.glob("*/*/config.yaml"))
    status = "interrupted" if interrupted.is_set() else "ok" if code == 0 else "failed"
    record.update(
        status=status,
        exit_code=None if status == "interrupted" else code,
        run_dir=str(runs[-1].relative_to(sweep_dir)) if runs else None,
        elapsed_s=round(time.monotonic() - start, 1),
    )
    write_job(job_dir, record)
    return record


def _log_line(record: dict[str, Any], total: int, job_dir: Path) -> str:
    code = record["exit_code"]
    return (
        f"sweep: [{record['index'] + 1}/{total}] {' '.join(record['overrides'])} -> "
        f"{record['status']}"
        + (f" (exit {code}, see {job_dir / 'run.log'})" if code else "")
        + f" in {record['elapsed_s']:.0f} s"
    )


def run_sweep(
    plan: SweepPlan,
    sweep_dir: Path,
    launcher: Launcher | None = None,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> int:
    """Run every job into ``sweep_dir/job-NNN/``, ``jobs`` at a time, past failures; return
    the failed count.

    ``job.json`` records each job's overrides, setting and seed when it starts and its
    status, exit code and run directory when it ends; the run directory is the one
    ``fedleak run`` creates under the job directory (``output_dir`` points there). Jobs start
    in plan order; with ``jobs > 1`` they finish, and are logged, in any order. On Ctrl-C the
    jobs not started are dropped, the launcher's ``stop()`` (if any) ends the running ones,
    which are recorded ``interrupted``, and ``KeyboardInterrupt`` propagates.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    launch = launcher or subprocess_launcher()
    log = log or (lambda line: print(line, flush=True))
    interrupted = threading.Event()
    failed = 0
    pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep-job")
    futures = {pool.submit(_run_job, job, sweep_dir, launch, interrupted): job for job in plan.jobs}
    try:
        for future in cf.as_completed(futures):
            record = future.result()
            failed += record["status"] != "ok"
            log(_log_line(record, len(plan.jobs), _job_dir(sweep_dir, futures[future])))
    except KeyboardInterrupt:
        interrupted.set()
        for future in futures:
            future.cancel()
        stop = getattr(launch, "stop", None)
        if callable(stop):
            stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failed


def _preflight_all(plan: SweepPlan) -> None:
    """Data set and environment checks of every job, before the first runs.

    Raises
    ------
    FedleakError
        The first job's error, its message prefixed with the job's overrides.
    """
    from fedleak.simulator.runtime.experiment_data import experiment_splits
    from fedleak.simulator.runtime.preflight import preflight

    for job in plan.jobs:
        try:
            preflight(job.cfg)
            experiment_splits(job.cfg)
        except FedleakError as exc:
            raise FedleakError(
                f"[{' '.join(job.overrides)}]: {exc}", exit_code=exc.exit_code, hint=exc.hint
            ) from exc


def multirun(
    overrides: Sequence[str],
    verbose: bool = False,
    jobs: int = 1,
    ray_address: str | None = None,
) -> int:
    """``fedleak run -m``: plan, check, run every job, print the summary; 0 when all passed.

    ``jobs`` runs at once: child processes here, or Ray jobs on the cluster whose job server
    is at ``ray_address``.

    Raises
    ------
    FedleakError
        Exit code 2 when any combination is invalid (nothing runs), 6 when the Ray job server
        cannot be reached, 1 when any run failed (the summary is still written), 130 when
        interrupted (the summary of what finished is written).
    """
    from fedleak.simulator import exit_codes
    from fedleak.simulator.sweep.summary import build_sweep_report

    plan = plan_sweep(overrides)
    _preflight_all(plan)
    launcher: Launcher = subprocess_launcher(verbose)
    if ray_address is not None:
        try:
            launcher = RayJobLauncher(ray_address, verbose)
        except ConnectionError as exc:
            raise FedleakError(str(exc), exit_code=exit_codes.RAY_UNREACHABLE) from exc
    sweep_dir = create_sweep_dir(plan)
    for combo, same_as in plan.dropped:
        print(
            f"sweep: skipping [{' '.join(combo)}]: same experiment as "
            f"[{' '.join(plan.jobs[same_as].overrides)}] (settings of disabled defenses "
            "do not matter)"
        )
    where = f"Ray jobs at {ray_address}" if ray_address else "here"
    print(
        f"fedleak: sweep of {len(plan.jobs)} runs, {jobs} at a time ({where}) -> {sweep_dir}",
        flush=True,
    )
    try:
        failed = run_sweep(plan, sweep_dir, launcher, jobs=jobs)
    except KeyboardInterrupt:
        print(build_sweep_report(sweep_dir))
        raise FedleakError(
            f"sweep interrupted; the runs so far are summarised in {sweep_dir}",
            exit_code=exit_codes.INTERRUPTED,
        ) from None
    print(build_sweep_report(sweep_dir))
    print(f"fedleak: sweep summary in {sweep_dir} (rebuild: fedleak sweep-report {sweep_dir})")
    if failed:
        raise FedleakError(f"{failed} of {len(plan.jobs)} runs failed; see the summary")
    return exit_codes.OK
