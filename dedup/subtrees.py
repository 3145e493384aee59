"""I/O: the walk shared out by subtrees among forked processes (dedup.tasktree), for the pipeline.

This process lists the top of each root breadth first until enough directories are waiting; each
of them (its whole subtree, depth first) is then a task for any process, and the directories a
task leaves waiting (`TASK_ENTRIES`) are its subtasks. A task lists each directory straight into
the file table's own columns (`PackedDirs`: names joined, numbers as machine arrays) and sends
them back; the table appends them without a loop per name (a tuple per directory cost 0.17 s of
the 0.48 s scan of /usr/lib, 11,239 directories), and they are yielded as they come in, while
the other processes still list, each with its key in the task tree's order (`tree_key`: the
table is in arrival order, dedup.sizing puts back the walk's order where an order counts).
Which directories are listed does not depend on the processes, as long as no directory is
reached twice (a root inside another root, a bind mount): the first path of such a
directory depends on the order of the walk, so then the sequential walk runs instead, its
listings are the ones yielded, and a None before them says that what came before is void.
"""

from __future__ import annotations

import os
import resource
import stat
from array import array
from itertools import accumulate

from dedup.listing import Listing, walk_listings
from dedup.model import FileProblem
from dedup.table import PackedDirs, clamp_ns, extend_ns
from dedup.tasktree import Refused, map_tree
from dedup.walk import WalkCounters, describe_os_error

try:  # `_Columns.list_dir` compiled, for walks without --include/--exclude (setup.py)
    from dedup._cwalk import Columns as CompiledColumns
except ImportError:  # no C compiler at install: the Python listing
    CompiledColumns = None

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from dedup.listing import FileFilter

TASKS_PER_PROC = 16  # directories waiting per process before the subtrees are shared out
# Entries one task lists at most before it hands back what is waiting, as its subtasks. (With a
# round of forked tasks at a time, 8192 beat 4096 — fewer rounds — and 65536 lost on the last
# round's imbalance: /usr/lib 0.609 -> 0.715 s.)
TASK_ENTRIES = 8192
# Entries a task run by the walk's own process lists between two looks at the workers (a look
# is a read of each worker's note pipe): about a millisecond.
LOOK_EVERY = 256
# Processes listing a tree whose top levels had to be read from the disk (at most the device's
# I/O threads). Cold /usr/lib, walk alone (5 alternated runs each, page cache dropped before
# each): 2 processes 0.754 s, 4: 0.648, 6: 0.648, 8: 0.723; whole cold runs against 2, paired:
# 4 processes 0.961 (13 pairs), 6: 0.912; the pyenv tree: 4: 0.978 (9 pairs), 6: 1.015 and
# 1.059. Warm, 6 processes instead of 2 cost 8% of the whole run on 2 cores: the cores are
# the limit there, not the disk.
COLD_PROCS = 4
# Blocks (of 512 bytes: ru_inblock) the top levels' listing must have read for `COLD_PROCS`: a
# cold listing of them read 3,424 (/usr/lib) and 3,720 (the pyenv tree), ext4 reading inode
# tables ahead; a warm page cache may miss a block or two (the bench machine's kernel pages out
# file pages it finds idle: 1 warm /usr/lib run of 16 listed with 4 processes, and more
# processes than cores cost a warm run up to 8%, above).
COLD_BLOCKS = 256

Pending = tuple[str, int, int, int]  # (path, root index, root's device, device)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


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
    cold_procs: int = 0,
) -> Iterator[PackedDirs | tuple[str, int, int, Listing] | None]:
    """Yield every directory under *roots* (symlinks not followed), listed by *procs* processes,
    as `PackedDirs` (the top levels, then one per task), as the listings come in, each with its
    `tree_key`: sorted by it, they are in this module's order (top levels breadth first, then
    subtree by subtree: the sequential walk's; where a subtree is cut into tasks depends on the
    processes and their timing, which files are yielded does not);
    or, when a directory is reached twice, what `walk_listings` yields — after a None when
    `PackedDirs` were yielded already: those are void. The counters are kept as
    `walk_listings` does. When listing the top levels read from the disk (the tree's
    metadata is not in memory), *cold_procs* processes list the rest, if more than *procs*."""
    counts = counters if counters is not None else WalkCounters()
    before = (counts.dirs, counts.skipped_symlinks, counts.skipped_special)
    one_fs = one_file_system
    visited = _DirIds()  # alive until the last task's listing is in (the table grows meanwhile)
    columns = _Columns()  # the top levels': roots that are files, then breadth first
    level: list[Pending] = []
    repeated = False
    for index, root in enumerate(roots):
        try:
            st = os.stat(root)
        except OSError as exc:
            columns.add("", index, 0, _listing([], [FileProblem(root, describe_os_error(exc))]))
            continue
        if stat.S_ISREG(st.st_mode):
            if not lowest <= st.st_size <= highest or (
                    select is not None and not select(root, st.st_size)):
                columns.add("", index, st.st_dev, _listing([], [], filtered=1))
            else:
                columns.add("", index, st.st_dev, Listing(  # listed under a root too, maybe
                    [root], [st.st_size], [st.st_ino], [st.st_mtime_ns], [], [], [], linked=[0]))
            continue
        if not stat.S_ISDIR(st.st_mode):
            counts.skipped_special += 1
            continue
        if (st.st_dev, st.st_ino) in visited:
            repeated = True
            break
        visited.add((st.st_dev, st.st_ino))
        level.append((root, index, st.st_dev, st.st_dev))

    def enter(root: int, root_dev: int, subdirs: list[tuple[str, int, int]], into: list[Pending],
              seen: set[tuple[int, int]] | _DirIds) -> bool:
        """Queue the subdirectories of one listing; return False when one was reached before."""
        for sub, dev, ino in subdirs:
            if (dev, ino) in seen:
                return False
            if one_fs and dev != root_dev:
                continue
            if enters_dir is None or enters_dir(sub):
                seen.add((dev, ino))
                into.append((sub, root, root_dev, dev))
        return True

    # The tasks list in C where no --include/--exclude filter asks for a call per file.
    compiled = CompiledColumns if select is None else None
    top = highest if highest != float("inf") else 1 << 63  # an int: the compiled listing clamps
    want = max(2, procs * TASKS_PER_PROC)
    blocks = _blocks_read()
    while level and len(level) < want and not repeated:
        below: list[Pending] = []
        for path, root, root_dev, dev in level:
            subdirs, _ = columns.list_dir(path, root, root_dev, dev, one_fs, lowest, highest,
                                          select)
            if not enter(root, root_dev, subdirs, below, visited):
                repeated = True
                break
        level = below

    def work(task: list[Pending], stop: Callable[[], bool]
             ) -> tuple[tuple, tuple[bytes, bool], list[list[Pending]]]:
        # One task: subtrees depth first, as the sequential walk, until about TASK_ENTRIES
        # entries are listed (or *stop* says a worker is idle); the directories still waiting
        # become its subtasks.
        out = _Columns() if compiled is None else compiled()
        seen: set[tuple[int, int]] = set()
        ok = True
        budget = TASK_ENTRIES
        look = budget - LOOK_EVERY
        starts = list(task)
        stack: list[Pending] = []
        while (stack or starts) and ok and budget > 0:
            if not stack:
                stack.append(starts.pop())
            path, root, root_dev, dev = stack.pop()
            if compiled is None:
                subdirs, kept = out.list_dir(path, root, root_dev, dev, one_fs, lowest, highest,
                                             select)
            else:
                subdirs, kept = out.list_dir(path, root, root_dev, dev, one_fs, lowest, top)
            budget -= 1 + kept + len(subdirs)
            ok = enter(root, root_dev, subdirs, stack, seen)
            if budget <= look:
                look = budget - LOOK_EVERY
                if stop():
                    break
        left = starts + stack  # popped from the end: in the order the walk would take them
        # A deep subtree comes back as its waiting directories, spread over the processes.
        per_task = max(1, len(left) // (procs * TASKS_PER_PROC)) if ok else len(left) + 1
        packed = out.pack() if compiled is not None else out.build().pack()
        return (packed, (array("Q", [x for key in seen for x in key]).tobytes(), ok),
                [left[i : i + per_task] for i in range(0, len(left), per_task)] if ok else [])

    def accept(info: tuple[bytes, bool]) -> bool:
        # Every directory listed once, or the sequential walk runs instead (its first path).
        ids, ok = info
        numbers = array("Q")
        numbers.frombytes(ids)
        return visited.add_new(numbers[0::2], numbers[1::2]) and ok

    if cold_procs > procs and _blocks_read() - blocks >= COLD_BLOCKS:
        procs = cold_procs  # waiting on the disk more than on the cores: more listings at once
    if not repeated:
        per_task = max(1, len(level) // (procs * TASKS_PER_PROC))
        dirs = columns.build()
        del columns
        _count(counts, dirs)
        yield dirs
        try:
            # Yielded while the other processes list: their columns are appended here meanwhile.
            for key, packed in map_tree(
                    [level[i : i + per_task] for i in range(0, len(level), per_task)],
                    work, procs, accept):
                dirs = PackedDirs.unpack(packed)
                dirs.tree_key = (0,) + key  # after the top levels' ()
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


def _blocks_read() -> int:
    """Return the blocks this process has read from disks so far (0 where not counted)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_inblock


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

    def add_new(self, devs: array, inos: array) -> bool:
        """Add the directories (devs[k], inos[k]), none twice; return False if one was here
        already. A set update per device (a walk task's are mostly of one): a loop per
        directory was 19 ms of the /usr/lib walk's merge (cProfile of a whole run)."""
        ok = True
        for dev in set(devs):
            mine = inos if devs.count(dev) == len(devs) else [
                ino for d, ino in zip(devs, inos, strict=True) if d == dev]
            known = self.by_dev.setdefault(dev, set())
            before = len(known)
            known.update(mine)
            ok = ok and len(known) == before + len(mine)
        return ok


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
        self._names(prefix, root, dev, names)
        self.sizes.extend(listing.sizes)
        self.inos.extend(listing.inos)
        extend_ns(self.mtimes, listing.mtimes)

    def _names(self, prefix: str, root: int, dev: int, names: list[str]) -> None:
        self.file_dir.extend([len(self.prefixes)] * len(names))
        self.prefixes.append(prefix)
        self.names.append("\0".join(names))
        self.roots.append(root)
        self.devs.append(dev)
        lens = list(map(len, names))
        self.name_len.extend(lens)
        # Offsets in the joined names: each name's length plus its separator, summed (in C).
        lens.pop()
        self.name_off.extend(accumulate(map((1).__add__, lens), initial=0))

    def list_dir(self, path: str, root: int, root_dev: int, dev: int, one_fs: bool,
                 lowest: int, highest: float, select: FileFilter | None
                 ) -> tuple[list[tuple[str, int, int]], int]:
        """List one directory (symlinks not followed) straight into the columns, as
        `dedup.listing.list_dir` selects its files; return its subdirectories (path, device,
        inode) and how many files it kept. No `Listing` in between: building one and copying
        it into the columns cost a loop per name more (a third of a walk task's time)."""
        out = self.out
        prefix = path if path.endswith("/") else path + "/"
        names: list[str] = []
        subdirs: list[tuple[str, int, int]] = []
        sizes, inos, mtimes = self.sizes, self.inos, self.mtimes
        out.dirs += 1
        dir_fd = -1
        try:
            # Through a descriptor: DirEntry.stat is fstatat(fd, name), no path resolved again.
            dir_fd = os.open(path, _DIR_FLAGS)
            with os.scandir(dir_fd) as listing:
                for entry in listing:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        out.problems.append((prefix + entry.name, "vanished during scan"))
                        continue
                    except OSError as exc:
                        out.problems.append((prefix + entry.name, describe_os_error(exc)))
                        continue
                    kind = st.st_mode & 0o170000
                    if kind == 0o100000:
                        file_dev = st.st_dev
                        if one_fs and file_dev != root_dev:
                            continue
                        size = st.st_size
                        if not lowest <= size <= highest or (
                                select is not None and not select(prefix + entry.name, size)):
                            out.filtered += 1
                            continue
                        if file_dev != dev:
                            out.other_devs.append((len(sizes), file_dev))
                        if st.st_nlink > 1:
                            out.linked.append(len(sizes))
                        names.append(entry.name)
                        sizes.append(size)
                        inos.append(st.st_ino)
                        try:
                            mtimes.append(st.st_mtime_ns)
                        except OverflowError:  # past 2262 (or before 1678): as _cwalk.c
                            mtimes.append(clamp_ns(st.st_mtime_ns))
                    elif kind == 0o040000:
                        subdirs.append((prefix + entry.name, st.st_dev, st.st_ino))
                    elif kind == 0o120000:
                        out.symlinks += 1
                    else:
                        out.special += 1
        except OSError as exc:
            # The directory itself is the error entry (DESIGN: "an unreadable directory is listed").
            out.problems.append((path, describe_os_error(exc)))
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        if names:
            self._names(prefix, root, dev, names)
        return subdirs, len(names)

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
