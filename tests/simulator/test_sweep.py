"""Sweeps: expansion as Hydra's BasicSweeper, validation of every combination, the summary."""

from __future__ import annotations

import csv
import json
import math
import socket
import threading
import time
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from fedleak.simulator import exit_codes
from fedleak.simulator.cli import main
from fedleak.simulator.config.schema import ConfigError
from fedleak.simulator.runtime.results import LeakageRecord
from fedleak.simulator.sweep.runner import expand_overrides, plan_sweep, run_sweep
from fedleak.simulator.sweep.summary import (
    SUMMARY_PNG,
    SUMMARY_TXT,
    SWEEP_CSV,
    aggregate,
    best_attack,
    build_sweep_report,
    load_results,
    mean_std,
)


def test_expansion_matches_hydras_basic_sweeper() -> None:
    overrides = ["a=1,2", "b=x", "c=range(0,3)", "d=choice(p,q)", "a=3,4"]
    parsed = OverridesParser.create().parse_overrides(overrides)
    (hydra_batches,) = BasicSweeper.split_arguments(parsed, None)
    assert expand_overrides(overrides) == hydra_batches
    assert len(hydra_batches) == 2 * 1 * 3 * 2


def test_expansion_of_ranges_and_list_values() -> None:
    assert expand_overrides(["seed=range(0,6,2)"]) == [["seed=0"], ["seed=2"], ["seed=4"]]
    assert expand_overrides(["defense=[dp,prune]", "seed=0"]) == [["defense=[dp,prune]", "seed=0"]]
    assert expand_overrides(["defense=[dp,prune],[none]"]) == [
        ["defense=[dp,prune]"],
        ["defense=[none]"],
    ]


def test_erroneous_sweep_that_cannot_be_enumerated() -> None:
    with pytest.raises(ConfigError, match="cannot be enumerated"):
        expand_overrides(["federation.lr=interval(0.1,1.0)"])


def test_plan_drops_combinations_whose_disabled_defense_settings_differ() -> None:
    plan = plan_sweep(["defense=none,dp", "defense.dp.noise=0.01,0.1", "seed=0,1"])
    assert len(plan.jobs) == 6 and len(plan.dropped) == 2
    dropped, same_as = plan.dropped[0]
    assert dropped == ["defense=none", "defense.dp.noise=0.1", "seed=0"]
    assert plan.jobs[same_as].overrides == ["defense=none", "defense.dp.noise=0.01", "seed=0"]
    settings = {tuple(job.setting) for job in plan.jobs}
    assert settings == {
        ("defense=none",),
        ("defense=dp", "defense.dp.noise=0.01"),
        ("defense=dp", "defense.dp.noise=0.1"),
    }
    assert [job.seed for job in plan.jobs] == [0, 1] * 3


def test_plan_keeps_combined_defenses_and_drops_their_unused_settings() -> None:
    plan = plan_sweep(["defense=[dp,prune],dp", "defense.prune.fraction=0.5,0.9"])
    assert [job.overrides for job in plan.jobs] == [
        ["defense=[dp,prune]", "defense.prune.fraction=0.5"],
        ["defense=[dp,prune]", "defense.prune.fraction=0.9"],
        ["defense=dp", "defense.prune.fraction=0.5"],
    ]
    assert plan.jobs[2].setting == ["defense=dp"]
    assert plan.jobs[0].cfg.defense.active() == ["prune", "dp"]


def test_erroneous_combinations_are_all_listed_before_anything_runs() -> None:
    with pytest.raises(ConfigError) as info:
        plan_sweep(["model=mlp,bogus", "federation.lr=0.1,-1"])
    problems = info.value.problems
    assert problems[0] == "3 of 4 sweep combinations are invalid:"
    assert sum("model=bogus" in p for p in problems) == 2
    assert any(p.startswith("[model=mlp federation.lr=-1]: federation.lr") for p in problems)


def test_erroneous_multirun_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "-m", f"output_dir={tmp_path}", "model=mlp,bogus", "seed=0,1"])
    assert code == exit_codes.CONFIG_ERROR
    assert "2 of 4 sweep combinations are invalid" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_erroneous_sweep_without_multirun_says_add_m(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"output_dir={tmp_path}", "seed=0,1"]) == exit_codes.CONFIG_ERROR
    err = capsys.readouterr().err
    assert "seed=0,1" in err and "add -m (--multirun)" in err
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------- synthetic runs


def _rows(attack: str, psnrs: list[float], recovery: float) -> list[LeakageRecord]:
    return [
        LeakageRecord(
            round=1, node_id=i, attack=attack, status="ok", psnr_mean=p, recovery_rate=recovery
        )
        for i, p in enumerate(psnrs)
    ]


def _write_run(job_dir: Path, records: list[LeakageRecord], accuracy: float) -> Path:
    run = job_dir / "default" / "20260101-000000-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: default\n", encoding="utf-8")
    (run / "leakage.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    training = [{"round": 0, "test_accuracy": 0.1}, {"round": 1, "test_accuracy": accuracy}]
    (run / "training.jsonl").write_text("".join(json.dumps(t) + "\n" for t in training))
    return run


def _job(sweep: Path, index: int, setting: list[str], seed: int, status: str = "ok") -> Path:
    job_dir = sweep / f"job-{index:03d}"
    job_dir.mkdir(parents=True)
    record = {
        "index": index,
        "overrides": [*setting, f"seed={seed}"],
        "setting": setting,
        "seed": seed,
        "epsilon": 12.5 if "defense=dp" in setting else None,
        "status": status,
        "exit_code": 0 if status == "ok" else 1,
        "run_dir": None,
    }
    if status == "ok":
        run = _write_run(job_dir, [], 0.0)
        record["run_dir"] = str(run.relative_to(sweep))
    (job_dir / "job.json").write_text(json.dumps(record))
    return job_dir


def _synthetic_sweep(sweep: Path) -> None:
    """Setting ``defense=none``: analytic PSNR 30/40/50 (IG lower), accuracy 0.5/0.6/0.7;
    setting ``defense=dp``: one run with PSNR 10, one failed run."""
    for seed, (psnr, acc) in enumerate([(30.0, 0.5), (40.0, 0.6), (50.0, 0.7)]):
        job_dir = _job(sweep, seed, ["defense=none"], seed)
        run = next(job_dir.glob("*/*"))
        records = [
            *_rows("analytic", [psnr - 1, psnr + 1], 1.0),
            *_rows("inverting_gradients", [psnr - 20, psnr - 10], 0.5),
            LeakageRecord(round=1, node_id=9, attack="dlg", status="failed"),
        ]
        (run / "leakage.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
        (run / "training.jsonl").write_text(json.dumps({"round": 1, "test_accuracy": acc}) + "\n")
    run = next(_job(sweep, 3, ["defense=dp"], 0).glob("*/*"))
    records = _rows("inverting_gradients", [10.0, 10.0], 0.0) + _rows("analytic", [5.0], 0.0)
    (run / "leakage.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    _job(sweep, 4, ["defense=dp"], 1, status="failed")


def test_best_attack_is_the_highest_mean_psnr_of_ok_rows() -> None:
    records = [
        *_rows("analytic", [20.0, 40.0], 0.5),
        *_rows("inverting_gradients", [29.0, 29.0], 1.0),
        LeakageRecord(round=1, node_id=5, attack="dlg", status="failed", psnr_mean=99.0),
        LeakageRecord(round=1, node_id=6, attack="spear", status="ok"),  # NaN PSNR
    ]
    assert best_attack(records) == ("analytic", 30.0, 0.5)
    assert best_attack([]) is None


def test_mean_std_is_sample_std_over_finite_values() -> None:
    assert mean_std([30.0, 40.0, 50.0, math.nan]) == (40.0, 10.0)
    assert mean_std([7.0]) == (7.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_summary_aggregates_seeds_and_records_the_failed_run(tmp_path: Path) -> None:
    _synthetic_sweep(tmp_path)
    results = load_results(tmp_path)
    assert [r.status for r in results] == ["ok"] * 4 + ["failed"]
    assert [r.best_attack for r in results[:4]] == ["analytic"] * 3 + ["inverting_gradients"]
    assert [r.leakage_psnr for r in results[:3]] == [30.0, 40.0, 50.0]
    none, dp = aggregate(results)
    assert (none.setting, none.seeds, none.failed, none.epsilon) == ("defense=none", 3, 0, None)
    assert none.leakage_psnr == pytest.approx((40.0, 10.0))
    assert none.test_accuracy == pytest.approx((0.6, 0.1))
    assert none.recovery_rate == (1.0, 0.0)
    assert (dp.seeds, dp.failed, dp.epsilon, dp.leakage_psnr) == (1, 1, 12.5, (10.0, 0.0))

    text = build_sweep_report(tmp_path)
    assert "40.0 ± 10.0" in text and "0.600 ± 0.100" in text
    assert "failed: job-004 [defense=dp seed=1] exit 1" in text
    assert (tmp_path / SUMMARY_TXT).read_text() == text + "\n"
    assert (tmp_path / SUMMARY_PNG).stat().st_size > 1000
    with (tmp_path / SWEEP_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["ok"] * 4 + ["failed"]
    assert rows[0]["best_attack"] == "analytic" and float(rows[2]["leakage_psnr"]) == 50.0
    assert rows[3]["epsilon"] == "12.5" and rows[0]["epsilon"] == ""


def test_sweep_runs_past_a_failed_run_and_records_it(tmp_path: Path) -> None:
    plan = plan_sweep([f"output_dir={tmp_path}", "defense=none,dp", "seed=0,1"])
    calls: list[list[str]] = []

    def launcher(overrides: list[str], job_dir: Path) -> int:
        calls.append(overrides)
        assert overrides[-1] == f"output_dir='{job_dir}'"
        if len(calls) == 2:
            return 1  # the second run fails before writing anything
        _write_run(job_dir, _rows("analytic", [60.0 - 10 * len(calls)], 1.0), 0.5)
        return 0

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    assert run_sweep(plan, sweep_dir, launcher, log=lambda line: None) == 1
    assert len(calls) == 4
    jobs = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("job-*/job.json"))]
    assert [j["status"] for j in jobs] == ["ok", "failed", "ok", "ok"]
    assert jobs[1]["exit_code"] == 1 and jobs[1]["run_dir"] is None
    assert jobs[2]["epsilon"] is not None and jobs[0]["epsilon"] is None
    rows = aggregate(load_results(sweep_dir))
    assert [(r.setting, r.seeds, r.failed) for r in rows] == [
        ("defense=none", 1, 1),
        ("defense=dp", 2, 0),
    ]
    assert rows[1].leakage_psnr == pytest.approx((25.0, math.sqrt(50.0)))


def test_erroneous_sweep_report_dir(tmp_path: Path) -> None:
    assert main(["sweep-report", str(tmp_path)]) == exit_codes.RUN_DIR_INVALID


def test_erroneous_launcher_is_recorded_as_a_failed_run(tmp_path: Path) -> None:
    def launcher(overrides: list[str], job_dir: Path) -> int:
        raise OSError("no such interpreter")

    assert run_sweep(plan_sweep(["seed=0"]), tmp_path, launcher, log=lambda line: None) == 1
    job = json.loads((tmp_path / "job-000" / "job.json").read_text())
    assert (job["status"], job["error"]) == ("failed", "OSError: no such interpreter")


# ------------------------------------------------------------------ jobs at once, Ray jobs


def test_parallel_sweep_runs_n_jobs_at_once(tmp_path: Path) -> None:
    plan = plan_sweep([f"output_dir={tmp_path}", "seed=range(0,6)"])
    lock = threading.Lock()
    running, peak = 0, 0

    def launcher(overrides: list[str], job_dir: Path) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3)
        _write_run(job_dir, _rows("analytic", [50.0], 1.0), 0.5)
        with lock:
            running -= 1
        return 0

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    lines: list[str] = []
    start = time.monotonic()
    assert run_sweep(plan, sweep_dir, launcher, log=lines.append, jobs=3) == 0
    assert peak == 3 and time.monotonic() - start < 6 * 0.3  # not one after the other
    jobs = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("job-*/job.json"))]
    assert [(j["index"], j["seed"], j["status"]) for j in jobs] == [(i, i, "ok") for i in range(6)]
    assert len(lines) == 6 and all(" -> ok in " in line for line in lines)
    assert len(load_results(sweep_dir)) == 6


class _BlockingLauncher:
    """The first job returns at once; the others run until :meth:`stop`."""

    def __init__(self) -> None:
        self.started: list[Path] = []
        self.stopped = threading.Event()
        self.four_started = threading.Event()

    def __call__(self, overrides: list[str], job_dir: Path) -> int:
        self.started.append(job_dir)
        if len(self.started) == 4:
            self.four_started.set()
        if len(self.started) > 1:
            self.stopped.wait(timeout=30)
            return 130
        return 0

    def stop(self) -> None:
        self.stopped.set()


def test_interrupted_parallel_sweep_stops_running_jobs_and_starts_no_more(tmp_path: Path) -> None:
    plan = plan_sweep(["seed=range(0,5)"])
    launcher = _BlockingLauncher()

    def ctrl_c(line: str) -> None:  # the user presses Ctrl-C as the first job ends
        assert launcher.four_started.wait(timeout=30)  # its worker has started job 3 meanwhile
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, tmp_path, launcher, log=ctrl_c, jobs=3)
    assert launcher.stopped.is_set() and len(launcher.started) == 4
    # the workers start their jobs in any order: the one launched first returned at once
    jobs = {p.parent: json.loads(p.read_text()) for p in tmp_path.glob("job-*/job.json")}
    assert sorted(jobs) == sorted(launcher.started)  # the fifth job never started
    first, *blocked = launcher.started
    assert jobs[first]["status"] == "ok" and jobs[first]["exit_code"] == 0
    assert all(jobs[d]["status"] == "interrupted" and jobs[d]["exit_code"] is None for d in blocked)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "2", "seed=0"], "add -m"),
        (["--ray-address", "http://127.0.0.1:8265", "seed=0"], "add -m"),
        (["-m", "--jobs", "0", "seed=0,1"], "--jobs must be >= 1"),
    ],
)
def test_erroneous_sweep_flags(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args, f"output_dir={tmp_path}"]) == exit_codes.CONFIG_ERROR
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_erroneous_ray_address_names_it_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{probe.getsockname()[1]}"
    args = ["run", "-m", "--ray-address", address, f"output_dir={tmp_path}", "seed=0,1"]
    assert main(args) == exit_codes.RAY_UNREACHABLE
    err = capsys.readouterr().err
    assert f"no Ray job server at {address!r}" in err and "ray start --head" in err
    assert not any(tmp_path.iterdir())
