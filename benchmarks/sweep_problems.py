"""Failed sweep jobs that a later job of the same combination settled.

A sweep on a loaded machine loses a job now and then (Ray could not start, another process
stopped it). Run again ok, in the same or a later sweep, the combination is measured and the
measurement is whole; only the failures no finished run settles make it broken.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def split_settled(
    problems: Iterable[tuple[str, Key]], finished: Iterable[Key]
) -> tuple[list[str], list[str]]:
    """(problems no finished run settles, problems whose combination finished in another job).

    Parameters
    ----------
    problems
        Each failure's message and the combination (factors, seed) it was to measure.
    finished
        The combinations that some job measured.
    """
    done = set(finished)
    pairs = list(problems)
    return [m for m, key in pairs if key not in done], [m for m, key in pairs if key in done]
