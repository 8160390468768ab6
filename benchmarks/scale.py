"""Scale: 100 simulated clients x 5 rounds, attacks on a seeded 10% of updates.

Runs ``fedleak run`` as a child process in its own session and samples the memory of every
process of that session (driver, Ray's raylet/GCS, client actors, attack workers) from
/proc, summing PSS so shared pages are counted once. Targets: < 10 min, < 8 GiB.

    python benchmarks/scale.py
    python benchmarks/scale.py --clients 100 --rounds 5 --fraction 0.1 -- model=lenet
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.tables import print_table  # noqa: E402
from fedleak.simulator.runtime.results import read_leakage  # noqa: E402


def session_pss_bytes(session_id: int) -> int:
    """Sum of PSS over the processes whose session id is ``session_id``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) != session_id:  # field 6 of stat: session id
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue  # the process ended between listing and reading
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("overrides", nargs="*", help="more fedleak overrides")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "fedleak.simulator.cli",
            "run",
            f"output_dir={out}",
            f"federation.num_clients={args.clients}",
            f"federation.rounds={args.rounds}",
            f"attack.client_fraction={args.fraction}",
            "attack=analytic_ig",
            *args.overrides,
        ]
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, session_pss_bytes(proc.pid))
                done.wait(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        output, _ = proc.communicate()
        wall = time.monotonic() - start
        done.set()
        sampler.join()
        runs = list(Path(out).glob("*/*/leakage.jsonl"))
        rows = read_leakage(runs[0]) if runs else []

    if proc.returncode != 0:
        print(output[-3000:])
    ok = sum(r.status == "ok" for r in rows)
    print_table(
        (
            "clients",
            "rounds",
            "fraction",
            "exit",
            "attack_rows",
            "ok",
            "wall_s",
            "peak_GiB",
            "targets",
        ),
        [
            (
                args.clients,
                args.rounds,
                args.fraction,
                proc.returncode,
                len(rows),
                ok,
                f"{wall:.0f}",
                f"{peak / 2**30:.2f}",
                "<600 s, <8 GiB",
            )
        ],
    )
    print(f"cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
