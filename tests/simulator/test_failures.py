"""Failures deep in Ray are summarised: one line per distinct cause, full traces in a file."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, Error, Message, RecordDict
from flwr.clientapp import ClientApp

from fedleak.server.validation import Rejection, check_structure, summarise_rejections
from fedleak.simulator import exit_codes
from fedleak.simulator.runtime.failures import (
    FailureLog,
    divert_flower_errors,
    failure_cause,
    short_message,
    summarise_causes,
)
from tests.flower_harness import LocalGrid

# The shape of what Flower logs for a ClientApp that raised inside a Ray actor.
RAY_ERROR = """\x1b[36mray::ClientAppActor.run()\x1b[39m (pid={pid}, ip=192.0.2.2)
  File "/venv/flwr/simulation/ray_transport/ray_actor.py", line 60, in run
    out_message = app(message=message, context=context)
  File "/repo/simulator/data/partitioning.py", line 101, in partition_indices
    raise ValueError(
ValueError: num_partitions must be in [1, 1437] (the number of samples), got {clients}

The above exception was the direct cause of the following exception:

  File "/venv/flwr/simulation/ray_transport/ray_actor.py", line 65, in run
    raise ClientAppException(str(ex)) from ex
flwr.clientapp.client_app.ClientAppException:
Exception ClientAppException occurred. Message: num_partitions must be in [1, 1437]"""
LOCAL_TRACEBACK = """Traceback (most recent call last):
  File "/venv/flwr/server/superlink/fleet/vce/vce_api.py", line 131, in worker
    out_mssg, updated_context = backend.process_message(message, context)
ray.exceptions.RayTaskError(ClientAppException): """


def _failure(pid: int, clients: int = 2000) -> tuple[str, str]:
    """The two traceback-bearing ERROR records Flower logs for one failed client."""
    remote = RAY_ERROR.format(pid=pid, clients=clients)
    return remote, LOCAL_TRACEBACK + remote


def test_the_cause_is_the_root_exception_not_ray_or_flower_wrappers() -> None:
    remote, local = _failure(pid=17)
    expected = "ValueError: num_partitions must be in [1, 1437] (the number of samples), got 2000"
    assert failure_cause(remote) == failure_cause(local) == expected
    assert failure_cause("ActorPool is empty!!!") == "ActorPool is empty!!!"
    assert summarise_causes([local, _failure(18)[1], _failure(19, clients=3000)[1]]) == [
        f"2 x {expected}",
        f"1 x {expected.replace('2000', '3000')}",
    ]


def test_short_message_cuts_long_text_and_points_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "failures.log"
    assert short_message("one line", log) == "one line"
    long = "\n".join(f"line {i}" for i in range(70_000))
    cut = short_message(long, log)
    assert len(cut.splitlines()) == 7 and cut.endswith(f"(70000 lines in all: see {log})")


def test_flower_errors_go_to_the_log_and_each_failure_is_counted_once(tmp_path: Path) -> None:
    seen: list[str] = []

    class Screen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("flwr")
    screen = Screen()
    logger.addHandler(screen)
    log = tmp_path / "failures.log"
    try:
        with divert_flower_errors(log) as failures:
            for pid in range(2000):
                remote, local = _failure(pid)
                logger.error("An exception was raised when processing a message by RayBackend")
                logger.error(remote)
                logger.error(local)
            logger.warning("a warning passes as before")
    finally:
        logger.removeHandler(screen)
    assert seen == [
        "An exception was raised when processing a message by RayBackend",  # once, not 2000x
        "a warning passes as before",
    ]
    assert failures.summary() == [
        f"2000 failure(s) inside Flower/Ray, 1 distinct cause(s) (full traces in {log}):",
        "  2000 x ValueError: num_partitions must be in [1, 1437] (the number of samples), "
        "got 2000",
    ]
    text = log.read_text()
    assert text.count("Traceback (most recent call last)") == 2000
    assert "\x1b[" not in text  # colours stripped
    assert FailureLog(tmp_path / "empty.log").summary() == []


def test_error_replies_are_rejected_with_their_cause_and_grouped() -> None:
    LocalGrid(ClientApp(), 1)  # sets the sender identity Flower's Message constructor reads
    request = Message(RecordDict(), dst_node_id=3, message_type="train")
    reason = "<class 'ray.exceptions.RayTaskError'>:<'" + _failure(5)[0] + "'>"
    replies = [Message(Error(code=2, reason=reason), reply_to=request) for _ in range(5)]
    reference = {"w": Array(np.zeros(2, np.float32))}
    _, rejected = check_structure(replies, reference, 10)
    assert {r.reason for r in rejected} == {
        "error reply (code 2): ValueError: num_partitions must be in [1, 1437] "
        "(the number of samples), got 2000"
    }
    many = [Rejection(node, rejected[0].reason) for node in range(2000)]
    many.append(Rejection(7, "non-finite values in ['w']"))
    summary = summarise_rejections(many)
    assert summary.startswith(f"2000 x {rejected[0].reason} (node 0, 1, 2, ...); 1 x non-")
    assert len(summary) < 400


BYPASS = (
    "import fedleak.simulator.runtime.preflight as p; p.check_partitions = lambda cfg: None; "
    "p.partition_sizes = lambda cfg: (); import fedleak.simulator.runtime.trainability as t; "
    "t.check_model_trains = lambda cfg: None; "
    "from fedleak.simulator.cli import console_main; console_main()"
)


@pytest.mark.slow
def test_clients_failing_inside_ray_give_one_line_per_cause(tmp_path: Path) -> None:
    """A real federation whose every client raises in its Ray actor.

    The start-up checks (partitions, trainability) refuse such settings, so the test skips
    them to make the clients fail where they used to: in partitioning, inside Ray.
    """
    overrides = ["federation.partitioner=dirichlet", "federation.alpha=0.001"]
    overrides += ["federation.num_clients=12", "federation.rounds=1", "attack=analytic"]
    proc = subprocess.run(
        [sys.executable, "-c", BYPASS, "run", f"output_dir={tmp_path}", *overrides],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == exit_codes.TOO_FEW_VALID_REPLIES, output[-3000:]
    assert len(output.splitlines()) < 20, output[-5000:]
    cause = "ValueError: The max number of attempts (10) was reached."
    assert "fedleak: 12 failure(s) inside Flower/Ray, 1 distinct cause(s)" in proc.stderr
    assert f"fedleak:   12 x {cause}" in proc.stderr
    assert f"rejected: 12 x error reply (code 2): {cause}" in proc.stderr
    (log,) = tmp_path.glob("*/*/failures.log")
    text = log.read_text()
    assert text.count("Traceback (most recent call last)") >= 12
    assert "--- fedleak run failed" in text  # the final error, whole, at the end
    (row,) = csv.DictReader((log.parent / "summary.csv").open())
    assert (row["rejected"], row["failed"]) == ("12", "0")  # refused replies, not attacks
