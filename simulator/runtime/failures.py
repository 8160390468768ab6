"""Failures deep in Flower and Ray, summarised: one line per distinct cause, traces in a file.

When every simulated client fails, Flower logs three ERROR records per client (a notice,
Ray's error with the remote traceback, and the local traceback), and each failed reply
carries the whole traceback again: thousands of clients make hundreds of thousands of
lines. :func:`divert_flower_errors` sends every Flower ERROR record to the run's
``failures.log`` instead of the screen and counts the failures by cause: the root
exception of the traceback (chained exceptions print the root first), e.g.
``ValueError: num_partitions must be in [1, 1437]``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

FAILURES_LOG = "failures.log"
TRACEBACK = "Traceback (most recent call last)"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FRAME = re.compile(r'^\s*File ".*", line \d+', re.MULTILINE)
WRAPPERS = ("RayTaskError", "RayActorError", "ClientAppException")
"""Exceptions that only carry a client's error across Ray and Flower: never the cause."""
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)(?:\(\w+\))?: *(.*)$")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_cause(text: str, limit: int = 300) -> str:
    """The root exception line of a traceback or error text (ANSI colours removed).

    The first ``SomethingError: message`` line with a message wins (a chained traceback
    prints its root cause first), passing over the exceptions Ray and Flower wrap a
    client's error in; text without any gives its first line.
    """
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    found = [
        line for line in lines if (m := _EXCEPTION.match(line)) is not None and m.group(1).strip()
    ]
    root = [line for line in found if not any(w in line.split(":")[0] for w in WRAPPERS)]
    if root or found:
        return _short((root or found)[0], limit)
    return _short(next((line for line in lines if line), text.strip()), limit)


def has_traceback(text: str) -> bool:
    """Whether ``text`` holds a Python traceback (local, or Ray's remote one)."""
    return TRACEBACK in text or _FRAME.search(text) is not None


def count_lines(causes: Counter[str]) -> list[str]:
    """``12 x ValueError: ...`` per cause, most frequent first."""
    return [f"{n} x {cause}" for cause, n in causes.most_common()]


def summarise_causes(texts: Iterable[str]) -> list[str]:
    """One ``N x cause`` line per distinct :func:`failure_cause` of ``texts``."""
    return count_lines(Counter(failure_cause(t) for t in texts))


def short_message(text: str, log: Path, max_lines: int = 6, max_chars: int = 1200) -> str:
    """``text`` cut to a few lines; where cut, it says that the whole of it is in ``log``."""
    lines = text.splitlines()
    short = "\n".join(lines[:max_lines])
    if len(lines) <= max_lines and len(text) <= max_chars:
        return text
    return f"{_short(short, max_chars)}\n... ({len(lines)} lines in all: see {log})"


class FailureLog(logging.Filter):
    """A filter for Flower's logger: ERROR records go to ``path``, counted by cause.

    A record holding a Python traceback is kept off the screen (the local traceback that
    Flower logs once per failure is the one counted). A one-line error reaches the
    screen the first time it is seen only.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.causes: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _write(self, record: logging.LogRecord, text: str) -> None:
        stamp = datetime.fromtimestamp(record.created).isoformat(timespec="milliseconds")
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {stamp} {record.levelname} {record.name}\n{text}\n")

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep ERROR records off the screen (see the class docstring); pass the rest."""
        if record.levelno < logging.ERROR:
            return True
        text = _ANSI.sub("", record.getMessage())
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self._write(record, text)
        with self._lock:
            if text.lstrip().startswith(TRACEBACK):
                self.causes[failure_cause(text)] += 1
                return False
            if has_traceback(text):
                return False
            first = text.strip().splitlines()[0] if text.strip() else ""
            if first in self._seen:
                return False
            self._seen.add(first)
        return True

    def summary(self) -> list[str]:
        """The lines to print after the run (empty when nothing failed)."""
        if not self.causes:
            return []
        total = sum(self.causes.values())
        return [
            f"{total} failure(s) inside Flower/Ray, {len(self.causes)} distinct cause(s) "
            f"(full traces in {self.path}):",
            *(f"  {line}" for line in count_lines(self.causes)),
        ]


@contextmanager
def divert_flower_errors(path: Path) -> Iterator[FailureLog]:
    """Install a :class:`FailureLog` on Flower's logger for the duration of the block."""
    logger = logging.getLogger("flwr")
    failure_log = FailureLog(path)
    logger.addFilter(failure_log)
    try:
        yield failure_log
    finally:
        logger.removeFilter(failure_log)
