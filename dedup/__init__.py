"""dedup: find duplicate files safely, and optionally link or remove them.

    from dedup import find_duplicates, ScanOptions
    report = find_duplicates(["photos"], ScanOptions(verify=True))
    for group in report.groups: print(group.size, group.paths)
"""

from __future__ import annotations

import sys

# The modules a plain run imports import no typing at run time (nor argparse: dedup.plainargs;
# nor re, threading, signal's enums, importlib): with them a run took 60 ms from start to exit
# on an empty directory, 38 ms without (loaded machine, 40 alternated pairs). Each module says
# `TYPE_CHECKING = False` (type checkers take any `if TYPE_CHECKING:` as true) and keeps the
# names only annotations use under it; a protocol is a plain class at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from dedup.actions import ActionResult, apply_actions
    from dedup.errors import DedupError, HashCacheError, UnsafeActionError, UsageError
    from dedup.model import DuplicateGroup, FileEntry, FileProblem, Report, Stats
    from dedup.options import ScanOptions
    from dedup.pipeline import find_duplicates
    from dedup.plan import Action, plan_actions

# Loaded on first use (PEP 562): `python -m dedup` imports this package first, and importing
# every module here cost each command-line run about 40 ms before it did anything.
_HOME = {
    "Action": "plan", "ActionResult": "actions", "DedupError": "errors",
    "DuplicateGroup": "model", "FileEntry": "model", "FileProblem": "model",
    "HashCacheError": "errors", "Report": "model", "ScanOptions": "options", "Stats": "model",
    "UnsafeActionError": "errors", "UsageError": "errors", "apply_actions": "actions",
    "find_duplicates": "pipeline", "plan_actions": "plan",
}


def __getattr__(name: str) -> object:
    """Return the public name *name* from the module that defines it (imported on first use)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'dedup' has no attribute {name!r}")
    __import__(f"dedup.{home}")  # not importlib: it imports warnings (~0.5 ms a run)
    value = getattr(sys.modules[f"dedup.{home}"], name)
    globals()[name] = value
    return value

__all__ = [
    "Action",
    "ActionResult",
    "DedupError",
    "DuplicateGroup",
    "FileEntry",
    "FileProblem",
    "HashCacheError",
    "Report",
    "ScanOptions",
    "Stats",
    "UnsafeActionError",
    "UsageError",
    "apply_actions",
    "find_duplicates",
    "plan_actions",
]
