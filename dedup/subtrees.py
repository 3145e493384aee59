"""I/O: the walk shared out by subtrees among forked processes (dedup.processes), for the pipeline.

This process lists the top of each root breadth first until enough directories are waiting; each
of them (its whole subtree, depth first) is then a task for any process. A task sends back its
listings packed (names joined, numbers as machine arrays: about the table's own bytes), and they
are yielded in task order. Which directories are listed does not depend on the processes, as long
as no directory is reached twice (a root inside another root, a bind mount): the first path of
such a directory depends on the order of the walk, so then the sequential walk runs instead, and
its listings are the ones yielded.
"""

from __future__ import annotations

import marshal
import os
import stat
from array import array
from collections.abc import Callable, Iterator, Sequence

from dedup.listing import FileFilter, Listing, list_dir, walk_listings
from dedup.model import FileProblem
from dedup.processes import MAX_TASKS, Results, map_in_processes
from dedup.walk import WalkCounters, describe_os_error

TASKS_PER_PROC = 16  # directories waiting per process before the subtrees are shared out
TASK_ENTRIES = 4096  # entries one task lists at most before it hands back what is waiting

Pending = tuple[str, int, int, int]  # (path, root index, root's device, device)
Packed = tuple  # (prefix, root, dev, names joined, sizes, inos, mtimes, other devs, problems,
#                 symlinks, special, filtered): one listing as marshal sends it


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
) -> Iterator[tuple[str, int, int, Listing]]:
    """Yield (directory prefix, root index, device, `Listing`) for every directory under *roots*
    (symlinks not followed), as `walk_listings` does, listed by *procs* processes. The order is
    this module's (top levels breadth first, then subtree by subtree), the same for any *procs*;
    a listing's `subdirs` is left empty."""
    counts = counters if counters is not None else WalkCounters()
    special_before = counts.skipped_special
    one_fs = one_file_system
    visited: set[tuple[int, int]] = set()
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
                top.append(("", index, st.st_dev, Listing([root], [st.st_size], [st.st_ino],
                                                          [st.st_mtime_ns], [], [], [])))
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
              seen: set[tuple[int, int]]) -> bool:
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

    def work(number: int) -> tuple[bytes, bytes, bool, list[Pending]]:
        # One task: subtrees depth first, as the sequential walk, until about TASK_ENTRIES
        # entries are listed; the directories still waiting are handed back for the next round.
        out: list[Packed] = []
        seen: set[tuple[int, int]] = set()
        ok = True
        budget = TASK_ENTRIES
        starts = list(tasks[number])
        stack: list[Pending] = []
        while (stack or starts) and ok and budget > 0:
            if not stack:
                stack.append(starts.pop())
            path, root, root_dev, dev = stack.pop()
            listing = list_dir(path, dev, False, root_dev, one_fs, lowest, highest, select,
                               os.scandir)
            budget -= 1 + len(listing.names) + len(listing.subdirs)
            ok = enter(path, root, root_dev, listing, stack, seen)
            out.append(_pack(path, root, dev, listing))
        left = starts + stack  # popped from the end: in the order the walk would take them
        # The listings marshalled apart: the check below loads them as one bytes object.
        return (marshal.dumps(out), array("Q", [x for key in seen for x in key]).tobytes(), ok,
                left)

    rounds: list[Results] = []
    try:
        while level and not repeated:
            # Each round shares out what is waiting, one directory per task (in chunks when
            # there are more than MAX_TASKS): a deep subtree comes back as its waiting
            # directories and is spread over the processes in the next round.
            per_task = max(-(-len(level) // MAX_TASKS), len(level) // (procs * TASKS_PER_PROC))
            tasks = [level[i : i + per_task] for i in range(0, len(level), per_task)]
            level = []
            results = map_in_processes(len(tasks), work, procs)
            rounds.append(results)
            for _, ids, ok, left in results:
                level.extend(tuple(p) for p in left)  # type: ignore[misc]
                numbers = array("Q")
                numbers.frombytes(ids)
                for k in range(0, len(numbers), 2):
                    key = (numbers[k], numbers[k + 1])
                    if key in visited:
                        ok = False
                    visited.add(key)
                if not ok:
                    repeated = True
                    break
        if not repeated:
            del visited
            for item in top:
                _count(counts, item[0], item[3])
                yield item
            del top
            for results in rounds:
                for packed_listings, _, _, _ in results:
                    for packed in marshal.loads(packed_listings):
                        prefix, root, dev, listing = _unpack(packed)
                        _count(counts, prefix, listing)
                        yield prefix, root, dev, listing
                results.close()
            return
    finally:
        for results in rounds:
            results.close()
    # A directory reached twice: its first path is the one of the sequential walk.
    counts.skipped_special = special_before
    yield from walk_listings(roots, one_file_system=one_fs, enters_dir=enters_dir,
                             counters=counts, lowest=lowest, highest=highest, select=select)


def _listing(names: list[str], problems: list[FileProblem], filtered: int = 0) -> Listing:
    return Listing(names, [], [], [], [], [], problems, filtered=filtered)


def _count(counts: WalkCounters, prefix: str, listing: Listing) -> None:
    counts.skipped_symlinks += listing.skipped_symlinks
    counts.skipped_special += listing.skipped_special
    if prefix:  # a directory's listing (a root that is a file, or failed, has none)
        counts.dirs += 1


def _pack(path: str, root: int, dev: int, listing: Listing) -> Packed:
    return (path if path.endswith("/") else path + "/", root, dev, "\0".join(listing.names),
            array("q", listing.sizes).tobytes(), array("Q", listing.inos).tobytes(),
            array("q", listing.mtimes).tobytes(), listing.other_devs,
            [(p.path, p.error) for p in listing.problems], listing.skipped_symlinks,
            listing.skipped_special, listing.filtered)


def _unpack(packed: Packed) -> tuple[str, int, int, Listing]:
    (prefix, root, dev, names, sizes, inos, mtimes, other_devs, problems, symlinks, special,
     filtered) = packed
    sizes_a, inos_a, mtimes_a = array("q"), array("Q"), array("q")
    sizes_a.frombytes(sizes)
    inos_a.frombytes(inos)
    mtimes_a.frombytes(mtimes)
    listing = Listing(names.split("\0") if names else [],
                      sizes_a, inos_a, mtimes_a,  # type: ignore[arg-type]
                      [tuple(x) for x in other_devs], [],
                      [FileProblem(path, error) for path, error in problems], symlinks, special,
                      filtered)
    return prefix, root, dev, listing
