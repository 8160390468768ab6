"""Runs are named from what differs from the default experiment, in the folder and the title."""

from __future__ import annotations

from pathlib import Path

from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.config.naming import MAX_NAME_LENGTH, derive_run_name, names_itself
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.report.html_report import render_html
from fedleak.simulator.runtime.results import RunPaths
from fedleak.simulator.runtime.rundir import create_run_dir


def test_the_default_experiment_is_named_default() -> None:
    assert load_experiment([]).name == "default"


def test_a_run_is_named_from_the_settings_it_changes() -> None:
    cfg = load_experiment(["model=lenet", "dataset=lfw", "defense=dp", "defense.dp.noise=0.1"])
    assert cfg.name == "lenet-lfw-dp0.1"
    cfg = load_experiment(["federation.batch_size=4", "seed=3", "attack=analytic_ig"])
    assert cfg.name == "B4-analytic+inverting_gradients-seed3"
    cfg = load_experiment(["model=lenet", "model.init=kaiming_uniform"])
    assert cfg.name == "lenet-kaiming_uniform-init"  # against lenet's own init, not the mlp's
    # where the run happens is not what the experiment is
    assert load_experiment(["pool=inprocess", "output_dir=/tmp/x"]).name == "default"


def test_name_given_on_the_command_line_wins() -> None:
    assert load_experiment(["name=mine", "model=lenet"]).name == "mine"
    assert load_experiment(["name=default", "model=lenet"]).name == "default"
    assert names_itself(["++name=x"]) and not names_itself(["dataset.name=lfw"])


def test_long_names_are_cut_but_stay_distinct() -> None:
    default = ExperimentConfig().to_dict()
    one, two = default | {"seed": 1}, default | {"seed": 2}
    for config in (one, two):
        config["attack"] = default["attack"] | {"names": ["inverting_gradients"] * 12}
    first, second = derive_run_name(one, default), derive_run_name(two, default)
    assert len(first) == len(second) == MAX_NAME_LENGTH and first != second


def test_the_run_folder_and_report_title_carry_the_name(tmp_path: Path) -> None:
    cfg = load_experiment(["model=lenet", "dataset=lfw", f"output_dir={tmp_path}"])
    paths = create_run_dir(cfg)
    assert paths.root.parent == tmp_path / "lenet-lfw"
    page = render_html(RunPaths(paths.root), [], [], {})
    assert "<title>fedleak report: lenet-lfw</title>" in page
    assert "<h1>fedleak report: lenet-lfw</h1>" in page
