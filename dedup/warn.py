"""Warnings of the dedup package: records of its loggers ("dedup", "dedup.pipeline", ...), with
`logging` imported at the first warning, not at start-up (most runs warn of nothing; importing
it took 8 ms of every command-line run). Every warning of the package goes through `warning`,
so a handler set up by `before_first` (the command line's) sees them all."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable


_setups: list[Callable[[], None]] = []


def warning(logger: str, message: str, *args: object) -> None:
    """Log `message % args` as a warning of the logger named *logger*."""
    import logging

    while _setups:
        _setups.pop(0)()
    logging.getLogger(logger).warning(message, *args)


def before_first(setup: Callable[[], None]) -> Callable[[], None]:
    """Run *setup* right before the next warning is logged; return a function that forgets it
    if it has not run (for the end of a run that warned of nothing)."""
    _setups.append(setup)

    def forget() -> None:
        if setup in _setups:
            _setups.remove(setup)

    return forget
