"""I/O: the columnar walk the pipeline uses: one directory listed into columns (`list_dir`), and
the walk over them in sequential depth-first order, listed ahead by a pool (`walk_listings`)."""

from __future__ import annotations

import os
import stat

from dedup.model import FileProblem
from dedup.walk import WalkCounters, describe_os_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from concurrent.futures import Executor, Future

    from dedup.walk import Scandir

    FileFilter = Callable[[str, int], bool]

class Listing:
    """What listing one directory gave: its selected files in columns, its subdirectories in
    listing order (path, device, inode), its problems, and counts."""

    __slots__ = ("names", "sizes", "inos", "mtimes", "other_devs", "subdirs", "problems",
                 "skipped_symlinks", "skipped_special", "filtered", "others", "linked")

    def __init__(self, names: list[str], sizes: list[int], inos: list[int], mtimes: list[int],
                 other_devs: list[tuple[int, int]], subdirs: list[tuple[str, int, int]],
                 problems: list[FileProblem], skipped_symlinks: int = 0,
                 skipped_special: int = 0, filtered: int = 0,
                 others: list[tuple[str, str, object, int]] | None = None,
                 linked: list[int] | None = None) -> None:
        self.names, self.sizes, self.inos, self.mtimes = names, sizes, inos, mtimes
        # (position, device) of files not on the directory's device
        self.other_devs = other_devs
        self.subdirs = subdirs
        self.problems = problems
        self.skipped_symlinks, self.skipped_special, self.filtered = (
            skipped_symlinks, skipped_special, filtered)
        # With --dirs (list_dir's *others*): the entries not in the columns, as (name, kind,
        # key, size) — see dedup.dirs; None otherwise.
        self.others = others
        # Positions of the files that may be another scanned path's file too (more than one
        # link, or reached through a symlink): only their sizes' buckets are checked for repeated
        # inodes (dedup.pipeline._Run.candidates).
        self.linked = linked if linked is not None else []


def list_dir(dir_path: str, dir_dev: int, follow: bool, root_dev: int, one_fs: bool,
             lowest: int, highest: float, select: FileFilter | None, scandir: Scandir,
             others: Callable[[str], bool] | None = None) -> Listing:
    """List one directory: stat every entry (through a directory descriptor with the real scandir),
    keep its regular files (inside the size range and *select*) in columns. Safe to run in a
    worker thread: it touches only its own objects (scandir, fstatat and open release the GIL).

    With *others* (--dirs: it says whether an entry's path is kept, i.e. not --exclude'd), every
    other entry is kept in `Listing.others` too: symlinks (target), special files, files outside
    the selection, entries that failed; subdirectories are in `subdirs` already.

    `dedup.subtrees._Columns.list_dir` is this function without *follow* and *others*, listing
    straight into a forked walk's columns (a loop per name less): what one selects, the other
    must select too (tests/dedup/test_processes.py compares the two walks)."""
    names: list[str] = []
    sizes: list[int] = []
    inos: list[int] = []
    mtimes: list[int] = []
    other: list[tuple[int, int]] = []
    subdirs: list[tuple[str, int, int]] = []
    problems: list[FileProblem] = []
    linked: list[int] = []
    out = Listing(names, sizes, inos, mtimes, other, subdirs, problems, linked=linked)
    prefix = dir_path if dir_path.endswith("/") else dir_path + "/"
    by_fd = scandir is os.scandir
    dir_fd = -1
    symlinks = special = filtered = 0
    kept: list[tuple[str, str, object, int]] | None = None
    if others is not None:
        out.others = kept = []
    try:
        if by_fd:
            dir_fd = os.open(dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        with scandir(dir_fd) if by_fd else scandir(dir_path) as listing:  # type: ignore[arg-type]
            for entry in listing:
                name = entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                    kind = st.st_mode & 0o170000
                    if kind == 0o120000:
                        if not follow:
                            symlinks += 1
                            if kept is not None:
                                _keep_link(kept, others, prefix, name, dir_fd)  # type: ignore[arg-type]
                            continue
                        try:
                            st = os.stat(prefix + name)
                        except OSError:  # dangling link or a loop of links: nothing to read
                            symlinks += 1
                            if kept is not None and others(prefix + name):  # type: ignore[misc]
                                kept.append((name, "x", prefix + name, 0))
                            continue
                        kind = st.st_mode & 0o170000
                        if kind == 0o100000:
                            linked.append(len(names))  # its own path may be listed too
                except FileNotFoundError:
                    problems.append(FileProblem(prefix + name, "vanished during scan"))
                    if kept is not None and others(prefix + name):  # type: ignore[misc]
                        kept.append((name, "x", prefix + name, 0))
                    continue
                except OSError as exc:
                    problems.append(FileProblem(prefix + name, describe_os_error(exc)))
                    if kept is not None and others(prefix + name):  # type: ignore[misc]
                        kept.append((name, "x", prefix + name, 0))
                    continue
                if kind == 0o100000:
                    dev = st.st_dev
                    if one_fs and dev != root_dev:
                        if kept is not None and others(prefix + name):  # type: ignore[misc]
                            kept.append((name, "f", (dev, st.st_ino), st.st_size))
                        continue
                    size = st.st_size
                    if not lowest <= size <= highest or (
                            select is not None and not select(prefix + name, size)):
                        filtered += 1
                        if kept is not None and others(prefix + name):  # type: ignore[misc]
                            key = ("empty",) if size == 0 else (dev, st.st_ino)
                            kept.append((name, "f", key, size))
                        continue
                    if dev != dir_dev:
                        other.append((len(names), dev))
                    if st.st_nlink > 1:
                        linked.append(len(names))
                    names.append(name)
                    sizes.append(size)
                    inos.append(st.st_ino)
                    mtimes.append(st.st_mtime_ns)
                elif kind == 0o040000:
                    subdirs.append((prefix + name, st.st_dev, st.st_ino))
                else:
                    special += 1
                    if kept is not None and others(prefix + name):  # type: ignore[misc]
                        kept.append((name, "s", kind, 0))
    except OSError as exc:
        # The directory itself is the error entry (DESIGN: "an unreadable directory is listed").
        problems.append(FileProblem(dir_path, describe_os_error(exc)))
        if kept is not None:
            kept.append(("", "x", dir_path, 0))  # unreadable: it matches nothing
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    out.skipped_symlinks, out.skipped_special, out.filtered = symlinks, special, filtered
    return out


def _keep_link(kept: list, others: Callable[[str], bool], prefix: str, name: str,
               dir_fd: int) -> None:
    # A symlink not followed is an entry keyed by its target text (dedup.dirs).
    path = prefix + name
    if not others(path):
        return
    try:
        target = os.readlink(name, dir_fd=dir_fd) if dir_fd >= 0 else os.readlink(path)
    except OSError:
        kept.append((name, "x", path, 0))
        return
    kept.append((name, "l", os.fsencode(target), 0))


class _Pending:
    """A directory waiting on the walk's stack, and its listing once submitted to the pool."""

    __slots__ = ("path", "root", "root_dev", "dev", "future")

    def __init__(self, path: str, root: int, root_dev: int, dev: int) -> None:
        self.path, self.root, self.root_dev, self.dev = path, root, root_dev, dev
        self.future: Future[Listing] | None = None


def walk_listings(
    roots: Sequence[str],
    *,
    follow_symlinks: bool = False,
    one_file_system: bool = False,
    enters_dir: Callable[[str], bool] | None = None,
    counters: WalkCounters | None = None,
    scandir: Scandir = os.scandir,
    lowest: int = 0,
    highest: float = float("inf"),
    select: FileFilter | None = None,
    pool: Executor | None = None,
    window: int = 16,
    others: Callable[[str], bool] | None = None,
) -> Iterator[tuple[str, int, int, Listing]]:
    """Yield (directory prefix, root index, device, `Listing`) for every directory, in the order of the
    sequential depth-first walk (`walk`), whatever *pool* runs the listings.

    With a *pool*, the next *window* directories on the stack are listed ahead by its threads;
    every decision that depends on order (a directory reached twice is listed under the first
    path; --exclude; one file system) is still made here, in walk order, so the output is the same
    as without a pool. The prefix is the directory's path ending in "/"; a root that is a regular
    file comes as a listing of its whole path under the prefix "". *others*: see `list_dir`.
    """
    counts = counters if counters is not None else WalkCounters()
    visited: set[tuple[int, int]] = set()
    follow, one_fs = follow_symlinks, one_file_system
    for index, root in enumerate(roots):
        try:
            st = os.stat(root)
        except OSError as exc:
            yield "", index, 0, Listing([], [], [], [], [], [],
                                        [FileProblem(root, describe_os_error(exc))])
            continue
        if stat.S_ISREG(st.st_mode):
            if not lowest <= st.st_size <= highest or (
                    select is not None and not select(root, st.st_size)):
                yield "", index, st.st_dev, Listing([], [], [], [], [], [], [], filtered=1)
            else:
                # A root file may be listed under another root too.
                yield "", index, st.st_dev, Listing([root], [st.st_size], [st.st_ino],
                                                    [st.st_mtime_ns], [], [], [], linked=[0])
            continue
        if not stat.S_ISDIR(st.st_mode):
            counts.skipped_special += 1
            continue
        if (st.st_dev, st.st_ino) in visited:
            counts.dirs_revisited += 1
            continue
        visited.add((st.st_dev, st.st_ino))
        stack = [_Pending(root, index, st.st_dev, st.st_dev)]
        inflight = 0
        while stack:
            if pool is not None:
                # List ahead the directories the walk takes next (the top of the stack).
                low = max(-1, len(stack) - 1 - window)
                for k in range(len(stack) - 1, low, -1):
                    if inflight >= window:
                        break
                    item = stack[k]
                    if item.future is None:
                        item.future = pool.submit(list_dir, item.path, item.dev, follow,
                                                  item.root_dev, one_fs, lowest, highest, select,
                                                  scandir, others)
                        inflight += 1
            item = stack.pop()
            counts.dirs += 1
            if item.future is not None:
                listing = item.future.result()
                inflight -= 1
            else:
                listing = list_dir(item.path, item.dev, follow, item.root_dev, one_fs, lowest,
                                   highest, select, scandir, others)
            counts.skipped_symlinks += listing.skipped_symlinks
            counts.skipped_special += listing.skipped_special
            for path, dev, ino in listing.subdirs:
                dir_id = (dev, ino)
                if dir_id in visited:
                    counts.dirs_revisited += 1
                elif one_fs and dev != item.root_dev:
                    continue
                elif enters_dir is None or enters_dir(path):
                    visited.add(dir_id)
                    stack.append(_Pending(path, item.root, item.root_dev, dev))
            path = item.path
            yield path if path.endswith("/") else path + "/", item.root, item.dev, listing
