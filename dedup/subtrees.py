"""I/O: the walk shared out by subtrees among forked processes (dedup.tasktree), for the pipeline.

This process lists the top of each root breadth first until enough directories are waiting; each
of them (its whole subtree, depth first) is then a task for any process, and the directories a
task leaves waiting (`TASK_ENTRIES`) are its subtasks. A task sends back its listings as the file
table's own columns (`PackedDirs`: names joined, numbers as machine arrays), which the table
appends without a loop per name (a tuple per directory cost 0.17 s of the 0.48 s scan of
/usr/lib, 11,239 directories), and they are yielded in task-tree order while the other processes
still list. Which directories are listed does not depend on the processes, as long as no
directory is reached twice (a root inside another root, a bind mount): the first path of such a
directory depends on the order of the walk, so then the sequential walk runs instead, its
listings are the ones yielded, and a None before them says that what came before is void.
"""

from __future__ import annotations

import os
import stat
from array import array
from collections.abc import Callable, Iterator, Sequence

from dedup.listing import FileFilter, Listing, list_dir, walk_listings
from dedup.model import FileProblem
from dedup.table import PackedDirs
from dedup.tasktree import Refused, map_tree
from dedup.walk import WalkCounters, describe_os_error

TASKS_PER_PROC = 16  # directories waiting per process before the subtrees are shared out
# Entries one task lists at most before it hands back what is waiting, as its subtasks. (With a
# round of forked tasks at a time, 8192 beat 4096 — fewer rounds — and 65536 lost on the last
# round's imbalance: /usr/lib 0.609 -> 0.715 s.)
TASK_ENTRIES = 8192

Pending = tuple[str, int, int, int]  # (path, root index, root's device, device)


def walk_forked(
    roots: Sequence[str],
    *,
    procs: int,
    one_file_system: bool = False,
    enters_dir: Callable[[str], bool] | None = None,
    counters: WalkCounters | None = None,
    lowest: int = 0,
    highest: float = float("inf"),
    select: FileFilter | None = None,
) -> Iterator[PackedDirs | tuple[str, int, int, Listing] | None]:
    """Yield every directory under *roots* (symlinks not followed), listed by *procs* processes,
    as `PackedDirs` (the top levels, then one per task) in this module's order (top levels
    breadth first, then subtree by subtree), the same for any *procs*, as the listings come in;
    or, when a directory is reached twice, what `walk_listings` yields — after a None when
    `PackedDirs` were yielded already: those are void. The counters are kept as
    `walk_listings` does."""
    counts = counters if counters is not None else WalkCounters()
    before = (counts.dirs, counts.skipped_symlinks, counts.skipped_special)
    one_fs = one_file_system
    visited = _DirIds()  # alive until the last task's listing is in (the table grows meanwhile)
    top: list[tuple[str, int, int, Listing]] = []
    level: list[Pending] = []
    repeated = False
    for index, root in enumerate(roots):
        try:
            st = os.stat(root)
        except OSError as exc:
            top.append(("", index, 0, _listing([], [FileProblem(root, describe_os_error(exc))])))
            continue
        if stat.S_ISREG(st.st_mode):
            if not lowest <= st.st_size <= highest or (
                    select is not None and not select(root, st.st_size)):
                top.append(("", index, st.st_dev, _listing([], [], filtered=1)))
            else:
                top.append(("", index, st.st_dev, Listing(  # listed under a root too, maybe
                    [root], [st.st_size], [st.st_ino], [st.st_mtime_ns], [], [], [], linked=[0])))
            continue
        if not stat.S_ISDIR(st.st_mode):
            counts.skipped_special += 1
            continue
        if (st.st_dev, st.st_ino) in visited:
            repeated = True
            break
        visited.add((st.st_dev, st.st_ino))
        level.append((root, index, st.st_dev, st.st_dev))

    def enter(path: str, root: int, root_dev: int, listing: Listing, into: list[Pending],
              seen: set[tuple[int, int]] | _DirIds) -> bool:
        """Queue the subdirectories of one listing; return False when one was reached before."""
        for sub, dev, ino in listing.subdirs:
            if (dev, ino) in seen:
                return False
            if one_fs and dev != root_dev:
                continue
            if enters_dir is None or enters_dir(sub):
                seen.add((dev, ino))
                into.append((sub, root, root_dev, dev))
        return True

    want = max(2, procs * TASKS_PER_PROC)
    while level and len(level) < want and not repeated:
        below: list[Pending] = []
        for path, root, root_dev, dev in level:
            listing = list_dir(path, dev, False, root_dev, one_fs, lowest, highest, select,
                               os.scandir)
            top.append((path if path.endswith("/") else path + "/", root, dev, listing))
            if not enter(path, root, root_dev, listing, below, visited):
                repeated = True
                break
        level = below

    def work(task: list[Pending]) -> tuple[tuple, tuple[bytes, bool], list[list[Pending]]]:
        # One task: subtrees depth first, as the sequential walk, until about TASK_ENTRIES
        # entries are listed; the directories still waiting become its subtasks.
        out = _Columns()
        seen: set[tuple[int, int]] = set()
        ok = True
        budget = TASK_ENTRIES
        starts = list(task)
        stack: list[Pending] = []
        while (stack or starts) and ok and budget > 0:
            if not stack:
                stack.append(starts.pop())
            path, root, root_dev, dev = stack.pop()
            listing = list_dir(path, dev, False, root_dev, one_fs, lowest, highest, select,
                               os.scandir)
            budget -= 1 + len(listing.names) + len(listing.subdirs)
            ok = enter(path, root, root_dev, listing, stack, seen)
            out.add(path if path.endswith("/") else path + "/", root, dev, listing)
        left = starts + stack  # popped from the end: in the order the walk would take them
        # A deep subtree comes back as its waiting directories, spread over the processes.
        per_task = max(1, len(left) // (procs * TASKS_PER_PROC)) if ok else len(left) + 1
        return (out.build().pack(), (array("Q", [x for key in seen for x in key]).tobytes(), ok),
                [left[i : i + per_task] for i in range(0, len(left), per_task)] if ok else [])

    def accept(info: tuple[bytes, bool]) -> bool:
        # Every directory listed once, or the sequential walk runs instead (its first path).
        ids, ok = info
        numbers = array("Q")
        numbers.frombytes(ids)
        for k in range(0, len(numbers), 2):
            key = (numbers[k], numbers[k + 1])
            if key in visited:
                ok = False
            visited.add(key)
        return ok

    if not repeated:
        per_task = max(1, len(level) // (procs * TASKS_PER_PROC))
        columns = _Columns()
        for item in top:
            columns.add(*item)
        del top
        dirs = columns.build()
        _count(counts, dirs)
        yield dirs
        try:
            # Yielded while the other processes list: their columns are appended here meanwhile.
            for packed in map_tree([level[i : i + per_task] for i in range(0, len(level), per_task)],
                                   work, procs, accept):
                dirs = PackedDirs.unpack(packed)
                _count(counts, dirs)
                yield dirs
            return
        except Refused:
            counts.dirs, counts.skipped_symlinks = before[0], before[1]
            yield None  # what was yielded is void: the sequential walk's listings follow
    # A directory reached twice: its first path is the one of the sequential walk.
    counts.skipped_special = before[2]
    yield from walk_listings(roots, one_file_system=one_fs, enters_dir=enters_dir,
                             counters=counts, lowest=lowest, highest=highest, select=select)


class _DirIds:
    """A set of directories' (device, inode), kept as a set of inodes per device: about 75
    bytes a directory instead of 150 (/usr/lib's 11,239 directories: 0.8 MB against 1.7)."""

    __slots__ = ("by_dev",)

    def __init__(self) -> None:
        self.by_dev: dict[int, set[int]] = {}

    def __contains__(self, key: tuple[int, int]) -> bool:
        inos = self.by_dev.get(key[0])
        return inos is not None and key[1] in inos

    def add(self, key: tuple[int, int]) -> None:
        inos = self.by_dev.get(key[0])
        if inos is None:
            inos = self.by_dev[key[0]] = set()
        inos.add(key[1])


def _listing(names: list[str], problems: list[FileProblem], filtered: int = 0) -> Listing:
    return Listing(names, [], [], [], [], [], problems, filtered=filtered)


class _Columns:
    """Listings gathered into the columns of one `PackedDirs` (in a worker, or here)."""

    def __init__(self) -> None:
        self.out = PackedDirs()
        self.prefixes: list[str] = self.out.prefixes
        self.names: list[str] = self.out.names
        self.roots, self.devs = array("I"), array("Q")
        self.file_dir, self.name_off, self.name_len = array("I"), array("I"), array("H")
        self.sizes, self.inos, self.mtimes = array("q"), array("Q"), array("q")

    def add(self, prefix: str, root: int, dev: int, listing: Listing) -> None:
        out = self.out
        out.symlinks += listing.skipped_symlinks
        out.special += listing.skipped_special
        out.filtered += listing.filtered
        if prefix:  # a directory's listing (a root that is a file, or failed, has none)
            out.dirs += 1
        out.problems.extend((p.path, p.error) for p in listing.problems)
        names = listing.names
        if not names:
            return
        first = len(self.sizes)
        out.other_devs.extend((first + pos, other) for pos, other in listing.other_devs)
        out.linked.extend(first + pos for pos in listing.linked)
        self.file_dir.extend([len(self.prefixes)] * len(names))
        self.prefixes.append(prefix)
        self.names.append("\0".join(names))
        self.roots.append(root)
        self.devs.append(dev)
        at = 0
        offs = self.name_off
        lens = self.name_len
        for name in names:
            offs.append(at)
            lens.append(len(name))
            at += len(name) + 1
        self.sizes.extend(listing.sizes)
        self.inos.extend(listing.inos)
        self.mtimes.extend(listing.mtimes)

    def build(self) -> PackedDirs:
        out = self.out
        out.roots, out.devs = self.roots.tobytes(), self.devs.tobytes()
        out.file_dir, out.name_off = self.file_dir.tobytes(), self.name_off.tobytes()
        out.name_len = self.name_len.tobytes()
        out.sizes, out.inos = self.sizes.tobytes(), self.inos.tobytes()
        out.mtimes = self.mtimes.tobytes()
        return out


def _count(counts: WalkCounters, dirs: PackedDirs) -> None:
    counts.skipped_symlinks += dirs.symlinks
    counts.skipped_special += dirs.special
    counts.dirs += dirs.dirs
