"""Pure: decide which file of each group to keep and what to do with the others (plans are data)."""

from __future__ import annotations

import os

from dedup.errors import UnsafeActionError
from dedup.model import DuplicateGroup, FileEntry, FrozenValue, set_field

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Literal

    Operation = Literal["delete", "hardlink", "symlink", "dedupe"]
    KeepPolicy = Literal["first", "oldest", "newest", "shortest-path"]
KEEP_POLICIES: tuple[str, ...] = ("first", "oldest", "newest", "shortest-path")


class Action(FrozenValue):
    """Replace or remove *target* (a duplicate of *keep*); *keep* itself is never touched.

    *blocked* is why planning already knows the action cannot be done ("" when it can): a dry
    run and --apply both report it as skipped with that reason, and neither tries it.
    """

    __slots__ = ("op", "target", "keep", "blocked")
    op: Operation
    target: FileEntry
    keep: FileEntry
    blocked: str

    def __init__(self, op: Operation, target: FileEntry, keep: FileEntry, blocked: str = "") -> None:
        set_field(self, "op", op)
        set_field(self, "target", target)
        set_field(self, "keep", keep)
        set_field(self, "blocked", blocked)


CROSS_DEVICE = "on another file system than the kept copy: a hard link cannot cross devices"
CROSS_DEVICE_DEDUPE = ("on another file system than the kept copy: extents are shared only within "
                       "one file system")


def blocked_reason(op: Operation, target: FileEntry, keep: FileEntry) -> str:
    """Return why *op* on *target* toward *keep* cannot be done at all, or "" (pure)."""
    if op == "hardlink" and target.dev != keep.dev:
        return CROSS_DEVICE
    if op == "dedupe" and target.dev != keep.dev:
        return CROSS_DEVICE_DEDUPE
    return ""


def is_under(path: str, prefixes: Sequence[str]) -> bool:
    """Return True when *path* is one of *prefixes* or lies below one (whole path components)."""
    if not prefixes:
        return False
    full = os.path.abspath(path)
    for prefix in prefixes:
        base = os.path.abspath(prefix)
        if full == base or full.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


def choose_keeper(
    group: DuplicateGroup, keep: KeepPolicy = "first", keep_paths: Sequence[str] = ()
) -> FileEntry:
    """Return the entry to keep: by *keep* among files under *keep_paths* if any, else among all."""
    protected = [e for e in group.entries if is_under(e.path, keep_paths)]
    candidates = protected or list(group.entries)
    if keep == "first":
        return min(candidates, key=FileEntry.order_key)
    if keep == "oldest":
        return min(candidates, key=lambda e: (e.mtime_ns, e.order_key()))
    if keep == "newest":
        return min(candidates, key=lambda e: (-e.mtime_ns, e.order_key()))
    if keep == "shortest-path":
        return min(candidates, key=lambda e: (len(os.fsencode(e.path)), e.order_key()))
    raise ValueError(f"unknown keep policy {keep!r}")


def plan_actions(
    groups: Iterable[DuplicateGroup],
    *,
    op: Operation,
    keep: KeepPolicy = "first",
    keep_paths: Sequence[str] = (),
) -> list[Action]:
    """Return the actions that would leave one file per group (plus files under *keep_paths*).

    Paths of the kept file and of files under *keep_paths* are never targets (acting on another
    hard link of a kept file frees nothing). Raise `UnsafeActionError` if a group would keep nothing.
    """
    actions: list[Action] = []
    for group in groups:
        keeper = choose_keeper(group, keep, keep_paths)
        untouched = {keeper.file_id}
        untouched.update(e.file_id for e in group.entries if is_under(e.path, keep_paths))
        targets = [e for e in group.entries if e.file_id not in untouched]
        if op == "dedupe":
            # Extents belong to the inode: one request per file, not one per hard link.
            seen: set[tuple[int, int]] = set()
            targets = [e for e in targets if not (e.file_id in seen or seen.add(e.file_id))]
        # Invariant: each group keeps at least one whole file, the keeper, untouched.
        if len(targets) >= len(group.entries) or keeper in targets:
            raise UnsafeActionError(f"plan would leave no copy of {keeper.path!r}")
        actions.extend(Action(op, target, keeper, blocked_reason(op, target, keeper))
                       for target in targets)
    return actions
