"""An optimisation run's iterations under a wall-clock budget, with step decays that follow.

An optimisation attack's cost per iteration spans three orders of magnitude: ~3 ms for a
32x32 LeNet, ~0.7 s for ResNet-18 on a busy CPU core. A fixed iteration count that is
thorough on the first overruns the pool's drain deadline on the second, and the update is
recorded ``timeout`` with nothing measured. :class:`TimedSchedule` keeps the configured count
where it fits the budget and otherwise runs as many iterations as the budget affords, measured
as it goes, with the step decays placed at the same fractions of the iterations it runs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

RATE_WINDOW = 16
"""Steps whose mean time estimates the next ones' (the first steps of a run are slower)."""


class TimedSchedule:
    """Iterations of one run: at most ``iterations``, within ``budget_s`` seconds.

    Iterating yields, before each step, how many step decays fall due there: a decay at
    fraction ``f`` falls due at iteration ``int(f * planned)`` (never at iteration 0), where
    ``planned`` is the configured count while the budget affords it. Once the time of the
    last :data:`RATE_WINDOW` steps says it does not, ``planned`` becomes the steps done plus
    what the rest of the budget affords, re-estimated at every step (the first steps are
    slower than the rest, and a machine's load changes), so a run that fits its budget is
    exactly the fixed-count schedule.

    Parameters
    ----------
    iterations
        The most iterations to run (>= 1).
    budget_s
        Wall-clock seconds for the whole run (> 0); the first iteration always runs.
    decay_points
        Fractions of the planned iterations at which the step size decays.
    clock
        Seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        iterations: int,
        budget_s: float,
        decay_points: tuple[float, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if iterations < 1 or not budget_s > 0:
            raise ValueError(
                f"iterations must be >= 1 and budget_s > 0, got {iterations}, {budget_s}"
            )
        self.iterations = iterations
        self.budget_s = budget_s
        self.decay_points = decay_points
        self.clock = clock
        self.planned = iterations
        self.done = 0

    @property
    def time_limited(self) -> bool:
        """Whether the budget cut the run short of ``iterations``."""
        return self.done < self.iterations

    def _replan(self, elapsed: float, recent_s: float, recent: int) -> None:
        per_iteration = recent_s / recent
        left = self.budget_s - elapsed
        affordable = self.done + int(left / per_iteration) if per_iteration > 0 else self.iterations
        self.planned = max(1, min(self.iterations, affordable))

    def __iter__(self) -> Iterator[int]:
        start = self.clock()
        stamps: deque[float] = deque([start], maxlen=RATE_WINDOW + 1)
        applied = 0
        while True:
            if self.done > 0:
                stamps.append(self.clock())
                self._replan(stamps[-1] - start, stamps[-1] - stamps[0], len(stamps) - 1)
            if self.done >= self.planned:
                return
            due = sum(1 for f in self.decay_points if 0 < int(f * self.planned) <= self.done)
            yield max(0, due - applied)
            applied = max(applied, due)
            self.done += 1
