"""dedup: find duplicate files safely, and optionally link or remove them.

    from dedup import find_duplicates, ScanOptions
    report = find_duplicates(["photos"], ScanOptions(verify=True))
    for group in report.groups: print(group.size, group.paths)
"""

from __future__ import annotations

from dedup.actions import ActionResult, apply_actions
from dedup.errors import DedupError, HashCacheError, UnsafeActionError, UsageError
from dedup.model import DuplicateGroup, FileEntry, FileProblem, Report, Stats
from dedup.options import ScanOptions
from dedup.pipeline import find_duplicates
from dedup.plan import Action, plan_actions

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
