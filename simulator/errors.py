"""The one base of fedleak's errors: each carries the ``fedleak`` exit code and a hint.

Every error a user can act on derives from :class:`FedleakError` (keeping, through a second
base, the built-in kind callers already catch, e.g. ``ValueError``). The CLI has one handler:
it prints ``fedleak: error: <message>`` (and the hint on the next line) and exits with the
error's :attr:`~FedleakError.exit_code` (:mod:`fedleak.simulator.exit_codes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fedleak.simulator import exit_codes

__all__ = ["FedleakError", "causes", "fedleak_cause"]


class FedleakError(Exception):
    """An error the user can act on.

    Parameters
    ----------
    message : str
        What is wrong, naming the bad key or path and the accepted values.
    exit_code : int, optional
        The CLI's exit code; defaults to the class's :attr:`exit_code`.
    hint : str, optional
        How to go on; printed on its own line after the message.
    """

    exit_code: int = exit_codes.RUN_FAILED

    def __init__(
        self, message: str, *, exit_code: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.hint = hint

    def describe(self) -> str:
        """The message, and the hint on the next line when there is one."""
        return str(self) if self.hint is None else f"{self}\n{self.hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        # subclasses take other constructor arguments: rebuild from state, not from args
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[FedleakError], args: tuple[Any, ...], state: dict[str, Any]) -> FedleakError:
    """Unpickle a :class:`FedleakError` (Ray and multiprocessing pickle errors)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes, outermost first (Flower re-raises the ServerApp's error)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        yield current
        current = current.__cause__ or current.__context__


def fedleak_cause(exc: BaseException) -> FedleakError | None:
    """The first :class:`FedleakError` among ``exc`` and its causes, else ``None``.

    Ray re-raises a worker's error as a subclass of both ``RayTaskError`` and the original
    class, so an ``isinstance`` test finds it across processes too.
    """
    return next((e for e in causes(exc) if isinstance(e, FedleakError)), None)
