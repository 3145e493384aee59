"""I/O: carry out a plan — re-stat, re-verify byte for byte, then act atomically (or only report)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dedup.hashing import open_for_read
from dedup.model import FileEntry
from dedup.plan import Action
from dedup.table import clamp_ns
from dedup.verify import partition_identical
from dedup.walk import describe_os_error
from dedup.warn import warning

if TYPE_CHECKING:
    from dedup.hashing import Opener

Status = Literal["planned", "done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened to one action: planned (dry run), done, skipped (a check refused) or failed."""

    action: Action
    status: Status
    detail: str = ""


def apply_actions(
    actions: Iterable[Action], *, dry_run: bool = True, opener: Opener = open_for_read
) -> list[ActionResult]:
    """Run *actions*; when *dry_run*, make every check but change nothing ("planned" results).

    Right before each action: the target must still be the regular file the scan saw (same
    device, inode, size, mtime), the kept copy too, and their bytes must be equal; else the action
    is skipped. A dry run makes the same checks (it reads both files), so it reports exactly
    what --apply would do at that moment: "planned" where --apply would act, "skipped" with the
    same reason where it would refuse. Links are made under a temporary name in the target's
    directory and moved over it with `os.replace`, so a crash leaves the old file or the link,
    never neither.
    """
    results = []
    for action in actions:
        refusal = action.blocked or _check(action, opener)
        if refusal:
            results.append(ActionResult(action, "skipped", refusal))
            continue
        if dry_run:
            results.append(ActionResult(action, "planned"))
            continue
        try:
            _act(action)
        except OSError as exc:
            results.append(ActionResult(action, "failed", describe_os_error(exc)))
            continue
        results.append(ActionResult(action, "done"))
    return results


def _unchanged(path: str, entry: FileEntry, *, follow: bool) -> str:
    """Return "" when *path* is still the regular file *entry* describes, else why not."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError as exc:
        return describe_os_error(exc)
    if not stat.S_ISREG(st.st_mode):
        return "no longer a regular file"
    if (st.st_dev, st.st_ino) != entry.file_id:
        return "replaced since the scan"
    if st.st_size != entry.size or clamp_ns(st.st_mtime_ns) != entry.mtime_ns:
        return "modified since the scan"
    return ""


def _check(action: Action, opener: Opener) -> str:
    target, keep = action.target, action.keep
    if target.file_id == keep.file_id:
        return "target and kept copy are the same file"
    # The target is checked without following symlinks: a symlink is never deleted or replaced
    # in place of the file it points to.
    why = _unchanged(target.path, target, follow=False)
    if why:
        return f"target {why}"
    why = _unchanged(keep.path, keep, follow=True)
    if why:
        return f"kept copy {why}"
    part = partition_identical([keep, target], opener=opener)
    if part.problems:
        return "cannot compare: " + "; ".join(f"{p.path}: {p.error}" for p in part.problems)
    if len(part.classes) != 1:
        return "content differs from the kept copy"
    # A write during the comparison changes mtime: check once more right before acting.
    why = _unchanged(target.path, target, follow=False) or _unchanged(keep.path, keep, follow=True)
    if why:
        return f"changed during verification: {why}"
    return ""


def _act(action: Action) -> None:
    target = action.target.path
    if action.op == "delete":
        os.unlink(target)
        return
    directory = os.path.dirname(target) or "."
    import secrets  # lazy: it loads OpenSSL (4 MB of RSS) that report-only runs do not need

    temp = os.path.join(directory, f".dedup-{secrets.token_hex(8)}.tmp")
    if action.op == "hardlink":
        os.link(action.keep.path, temp)
    elif action.op == "symlink":
        os.symlink(os.path.abspath(action.keep.path), temp)
    else:
        raise ValueError(f"unknown operation {action.op!r}")
    try:
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError as exc:
            warning(__name__, "could not remove temporary link %s: %s", temp, exc)
        raise
