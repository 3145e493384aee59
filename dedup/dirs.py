"""`--dirs`: duplicate directories — whole subtrees with the same relative paths and identical contents.

Like rmlint's directory merging, each directory's signature is built bottom-up from its entries'
names and content keys, and the file digests come from the normal run: a regular file's key is its
duplicate group, or its own (device, inode) when it is in no group (unique content). Empty files
and empty directories are entries like any other; a symlink (not followed) is keyed by its target
text, a FIFO or device by its kind. Only the topmost of nested duplicates is reported.

There is no second walk: the scan's own listings are kept (`DirTree`, filled by the pipeline), and
`duplicate_dirs` merges upward from them and the report's groups without touching the disk.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Sequence
from itertools import repeat

from dedup.listing import Listing
from dedup.model import DuplicateDir, DuplicateGroup
from dedup.table import FileTable


class DirTree:
    """What --dirs (and --similar) keep of the scan's own walk: every directory, the table range of
    its files, its subdirectories and its other entries. Filled by the pipeline as it walks (no
    second walk); the file names, sizes and inodes stay in the scan's compact `FileTable`."""

    __slots__ = ("roots", "prefixes", "dir_root", "first", "count", "table_dir", "subdirs",
                 "others", "table")

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = list(roots)
        self.prefixes: list[str] = []  # per directory, in walk order (parents before children)
        self.dir_root = array("I")
        self.first = array("q")  # table index of its first file
        self.count = array("I")  # its files in the table
        self.table_dir = array("q")  # its directory number in the table, or -1
        self.subdirs: list[list[tuple[str, int, int]]] = []
        self.others: list[list[tuple[str, str, object, int]] | None] = []
        self.table: FileTable | None = None  # set by the pipeline

    def add(self, prefix: str, root: int, listing: Listing, first: int, table_dir: int) -> None:
        """Record one listed directory (*first*/*table_dir*: where its files went in the table)."""
        if not prefix:
            return  # a regular file given as a root, or a root that failed: no directory
        self.prefixes.append(prefix)
        self.dir_root.append(root)
        self.first.append(first)
        self.count.append(len(listing.sizes))
        self.table_dir.append(table_dir)
        self.subdirs.append(listing.subdirs)
        self.others.append(listing.others or None)

    def path(self, k: int) -> str:
        """Return directory *k*'s path as the scan spells it (a root as given)."""
        prefix = self.prefixes[k]
        root = self.roots[self.dir_root[k]]
        if prefix == root or prefix == root + "/":
            return root
        return prefix[:-1]


def duplicate_dirs(tree: DirTree, groups: Sequence[DuplicateGroup], *, include_empty: bool = False,
                   enters_dir: Callable[[str], bool] | None = None) -> list[DuplicateDir]:
    """Return the topmost groups of duplicate directories, largest first.

    Bottom-up from the file digests of the run: a file's key is its group, or its own (device,
    inode). A directory is reported only if its subtree holds at least one non-empty file (or,
    with *include_empty*, any file): empty directories alone are not worth reporting as copies.
    *enters_dir* says which subdirectories --exclude left out (absent, not different).
    """
    group_of = {(e[2], e[3]): number for number, group in enumerate(groups)
                for e in group.entries}  # (device, inode) -> group
    get = group_of.get
    table = tree.table if tree.table is not None else FileTable()
    sizes, inos, dev_of, dir_dev = table.size, table.ino, table.dev_of, table.dir_dev
    index_of = {prefix: k for k, prefix in enumerate(tree.prefixes)}
    count = len(tree.prefixes)
    signature = [0] * count
    total_size = [0] * count  # bytes of one copy
    total_files = [0] * count
    interned: dict[tuple, int] = {}
    # Children are listed after their parents: walking the order backwards is bottom-up.
    for k in range(count - 1, -1, -1):
        size = files = 0
        n = tree.count[k]
        if n:
            d, first = tree.table_dir[k], tree.first[k]
            dev = dir_dev[d]
            if dev_of:
                ids = [(dev_of.get(i, dev), inos[i]) for i in range(first, first + n)]
            else:
                ids = [(dev, ino) for ino in inos[first : first + n]]
            # A file's key: its group number, else its own (device, inode) — an empty file in
            # the table is in the group of all empty files unless it is the only one.
            entries = list(zip(table.names[d].split("\0"), repeat("f"),
                               [get(i, i) for i in ids]))
            size, files = sum(sizes[first : first + n]), n
        else:
            entries = []
        for name, kind, key, file_size in tree.others[k] or ():
            entries.append((name, kind, key))
            if kind == "f":
                size += file_size
                files += 1
        cut = len(tree.prefixes[k])
        for path, _, _ in tree.subdirs[k]:
            sub = index_of.get(path + "/")
            if sub is not None:
                entries.append((path[cut:], "d", signature[sub]))
                size += total_size[sub]
                files += total_files[sub]
            elif enters_dir is None or enters_dir(path):
                entries.append((path[cut:], "x", path))  # listed elsewhere or not entered
        entries.sort()  # names are unique in a directory: keys are never compared
        signature[k] = interned.setdefault(tuple(entries), len(interned))
        total_size[k], total_files[k] = size, files
    by_sig: dict[int, list[int]] = {}
    for k in range(count):
        if total_size[k] > 0 or (include_empty and total_files[k] > 0):
            by_sig.setdefault(signature[k], []).append(k)
    dup_sets = [[tree.path(k) for k in ks] for ks in by_sig.values() if len(ks) > 1]
    root_of = {tree.path(k): tree.dir_root[k] for ks in by_sig.values() if len(ks) > 1
               for k in ks}
    sized = {tree.path(ks[0]): (total_size[ks[0]], total_files[ks[0]])
             for ks in by_sig.values() if len(ks) > 1}
    in_dup = {p for paths in dup_sets for p in paths}
    result = []
    for paths in dup_sets:
        uncovered = [p for p in paths if _parent(p) not in in_dup]
        if not uncovered:
            continue  # every copy lies inside a copy of a larger duplicate: not topmost
        covered = [p for p in paths if p not in uncovered]
        shown = uncovered + covered[:1]  # one covered copy stands for its reported parent
        if len(shown) < 2:
            continue
        size, files = sized[paths[0]]
        shown.sort(key=lambda p: (root_of.get(p, 0), os.fsencode(p)))
        result.append(DuplicateDir(size=size, files=files, paths=tuple(shown)))
    result.sort(key=lambda d: (-d.size, os.fsencode(d.paths[0])))
    return result


def folded_group_indexes(groups: Sequence[DuplicateGroup], dirs: Sequence[DuplicateDir]) -> set[int]:
    """Return the indexes of groups whose every path lies inside a reported duplicate directory."""
    reported = {p for d in dirs for p in d.paths}
    if not reported:
        return set()

    covered: dict[str, bool] = {}  # directory -> lies in a reported one (memo: files share them)

    def inside(path: str) -> bool:
        chain = []
        parent = _parent(path)
        while True:
            known = covered.get(parent)
            if known is not None:
                break
            if not parent:
                known = False
                break
            if parent in reported:
                known = True
                break
            chain.append(parent)
            up = _parent(parent)
            if up == parent:
                known = False
                break
            parent = up
        for d in chain:
            covered[d] = known
        return known

    return {i for i, g in enumerate(groups) if all(inside(e.path) for e in g.entries)}


def _parent(path: str) -> str:
    head = path.rstrip("/").rpartition("/")[0]
    return head if head else ("/" if path.startswith("/") else "")
