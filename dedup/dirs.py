"""`--dirs`: duplicate directories — whole subtrees with the same relative paths and identical contents.

Like rmlint's directory merging, each directory's signature is built bottom-up from its entries'
names and content keys, and the file digests come from the normal run: a regular file's key is its
duplicate group, or its own (device, inode) when it is in no group (unique content). Empty files
and empty directories are entries like any other; a symlink (not followed) is keyed by its target
text, a FIFO or device by its kind. Only the topmost of nested duplicates is reported.

`duplicate_dirs` is pure (it takes a `Listing`); `list_tree` is the thin walk that builds one.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from dedup.model import DuplicateDir, DuplicateGroup

# A child: (name as bytes, kind, key). kind "f" file (key: content key), "d" directory (key: its
# path, resolved to a signature), "l" symlink (key: target bytes), "s" special (key: file type),
# "x" unreadable or vanished (key: its path, so it matches nothing).
Child = tuple[bytes, str, Hashable]


@dataclass(slots=True)
class Listing:
    """What the walk saw: each directory's children, and each regular file's size and identity."""

    children: dict[str, list[Child]] = field(default_factory=dict)  # dir path -> entries
    files: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # size, dev, ino, mtime
    order: list[str] = field(default_factory=list)  # directories in the order first listed
    roots: dict[str, int] = field(default_factory=dict)  # dir path -> root index


def content_keys(groups: Iterable[DuplicateGroup], listing: Listing) -> dict[str, Hashable]:
    """Return a content key per regular file: its group number, else ("empty") or its inode."""
    keys: dict[str, Hashable] = {}
    for number, group in enumerate(groups):
        for entry in group.entries:
            keys[entry.path] = ("g", number)
    for path, (size, dev, ino, _) in listing.files.items():
        if path not in keys:
            keys[path] = ("empty",) if size == 0 else ("i", dev, ino)
    return keys


def duplicate_dirs(listing: Listing, keys: dict[str, Hashable], *,
                   include_empty: bool = False) -> list[DuplicateDir]:
    """Return the topmost groups of duplicate directories, largest first (pure).

    A directory is reported only if its subtree holds at least one non-empty file (or, with
    *include_empty*, any file): empty directories alone are not worth reporting as copies.
    """
    signature: dict[str, int] = {}
    totals: dict[str, tuple[int, int]] = {}  # path -> (bytes, files) of one copy
    interned: dict[tuple, int] = {}
    # Children are listed after their parents: walking the order backwards is bottom-up.
    for path in reversed(listing.order):
        entries = []
        size = files = 0
        for name, kind, key in listing.children.get(path, ()):
            child = _join(path, name)
            if kind == "f":
                entries.append((name, "f", keys.get(child, ("x", child))))
                size += listing.files[child][0] if child in listing.files else 0
                files += 1
            elif kind == "d":
                sig = signature.get(child)
                entries.append((name, "d", sig if sig is not None else ("x", child)))
                sub = totals.get(child, (0, 0))
                size, files = size + sub[0], files + sub[1]
            else:
                entries.append((name, kind, key))
        entries.sort(key=lambda e: (e[0], e[1]))
        signature[path] = interned.setdefault(tuple(entries), len(interned))
        totals[path] = (size, files)
    by_sig: dict[int, list[str]] = {}
    for path in listing.order:
        size, files = totals[path]
        if size > 0 or (include_empty and files > 0):
            by_sig.setdefault(signature[path], []).append(path)
    dup_sets = [paths for paths in by_sig.values() if len(paths) > 1]
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
        shown.sort(key=lambda p: (listing.roots.get(p, 0), os.fsencode(p)))
        size, files = totals[paths[0]]
        result.append(DuplicateDir(size=size, files=files, paths=tuple(shown)))
    result.sort(key=lambda d: (-d.size, os.fsencode(d.paths[0])))
    return result


def folded_group_indexes(groups: Sequence[DuplicateGroup], dirs: Sequence[DuplicateDir]) -> set[int]:
    """Return the indexes of groups whose every path lies inside a reported duplicate directory."""
    reported = {p for d in dirs for p in d.paths}
    if not reported:
        return set()

    def inside(path: str) -> bool:
        parent = _parent(path)
        while parent and parent not in reported:
            up = _parent(parent)
            if up == parent:
                return False
            parent = up
        return bool(parent)

    return {i for i, g in enumerate(groups) if all(inside(e.path) for e in g.entries)}


def _join(directory: str, name: bytes) -> str:
    prefix = directory if directory.endswith("/") else directory + "/"
    return prefix + os.fsdecode(name)


def _parent(path: str) -> str:
    head = path.rstrip("/").rpartition("/")[0]
    return head if head else ("/" if path.startswith("/") else "")


# ---------------------------------------------------------------- I/O: the walk


def list_tree(roots: Sequence[str], *, follow_symlinks: bool = False, one_file_system: bool = False,
              enters_dir: Callable[[str], bool] | None = None) -> Listing:
    """Walk *roots* (metadata only) and return every directory's children for `duplicate_dirs`.

    Paths are spelled as the scan spells them (directory + "/" + name). Entries excluded by
    --exclude are left out, as if absent; a directory is listed once (loops, bind mounts).
    """
    listing = Listing()
    visited: set[tuple[int, int]] = set()
    stack: list[tuple[str, int, int]] = []
    for index, root in enumerate(roots):
        try:
            st = os.stat(root)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):  # a file given as a root: --similar may want it
            listing.files[root] = (st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns)
        elif stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in visited:
            visited.add((st.st_dev, st.st_ino))
            stack.append((root, index, st.st_dev))
    stack.reverse()
    while stack:
        path, root, root_dev = stack.pop()
        listing.order.append(path)
        listing.roots[path] = root
        children: list[Child] = []
        listing.children[path] = children
        prefix = path if path.endswith("/") else path + "/"
        try:
            with os.scandir(path) as it:
                names = [(e.name, prefix + e.name) for e in it]
        except OSError:
            children.append((b"", "x", path))  # unreadable: it matches nothing
            continue
        for name, full in names:
            raw = os.fsencode(name)
            if enters_dir is not None and not enters_dir(full):
                continue
            try:
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    if not follow_symlinks:
                        children.append((raw, "l", os.fsencode(os.readlink(full))))
                        continue
                    st = os.stat(full)
            except OSError:
                children.append((raw, "x", full))
                continue
            if stat.S_ISREG(st.st_mode):
                children.append((raw, "f", None))
                listing.files[full] = (st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in visited or (one_file_system and st.st_dev != root_dev):
                    children.append((raw, "x", full))
                    continue
                visited.add((st.st_dev, st.st_ino))
                children.append((raw, "d", None))
                stack.append((full, root, root_dev))
            else:
                children.append((raw, "s", stat.S_IFMT(st.st_mode)))
    return listing
