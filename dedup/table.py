"""Scanned files in columns: a few typed arrays and one string of names per directory.

A plain record per file — (path, size, dev, ino, mtime_ns, root), a tuple of Python objects —
costs about 330 bytes (the tuple, a full path string, three ints). Here a file costs 34 bytes of
arrays plus its name's characters and a separator: a directory's path is stored once, its files'
names are joined into one string, and sizes, inodes and mtimes are machine integers. Records are
built back (`record`) only for the files that are compared, a group at a time.
"""

from __future__ import annotations

import os
from array import array

from dedup.model import ENTRY_NUMBERS

try:  # SizeBuckets.add compiled, for a forked walk's columns (setup.py)
    from dedup._ctable import add_sizes
except ImportError:  # no C compiler at install
    add_sizes = None

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Record = tuple  # (path, size, dev, ino, mtime_ns, root): FileEntry's layout
NS_MIN, NS_MAX = -(1 << 63), (1 << 63) - 1  # what an int64 column of nanoseconds holds


def clamp_ns(ns: int) -> int:
    """Return a time in nanoseconds clamped to an int64 column's range (past 2262, before 1678:
    a file's time set so by hand; the nearest time the column holds stands for it)."""
    return NS_MIN if ns < NS_MIN else NS_MAX if ns > NS_MAX else ns


def extend_ns(column: array, values: Sequence[int]) -> None:
    """Extend an int64 column with times in nanoseconds, clamped where they overflow it (read
    twice then: a sequence, not an iterator)."""
    before = len(column)
    try:
        column.extend(values)
    except OverflowError:
        del column[before:]
        column.extend(map(clamp_ns, values))


class PackedDirs:
    """Directories listed by one walk task, in the table's own columns (machine arrays as bytes,
    names joined per directory), with their problems and counts: what a forked process sends
    back (dedup.subtrees), and `FileTable.add_packed` appends."""

    __slots__ = ("prefixes", "roots", "devs", "names", "file_dir", "name_off", "name_len",
                 "sizes", "inos", "mtimes", "other_devs", "problems", "symlinks", "special",
                 "filtered", "dirs", "linked", "tree_key")

    def __init__(self) -> None:
        self.prefixes: list[str] = []  # per directory with files, as FileTable's
        self.names: list[str] = []
        self.roots = self.devs = b""
        self.file_dir = self.name_off = self.name_len = b""  # per file; file_dir from 0
        self.sizes = self.inos = self.mtimes = b""
        self.other_devs: list[tuple[int, int]] = []  # (file position from 0, device)
        self.linked: list[int] = []  # file positions from 0: see FileTable.linked
        self.problems: list[tuple[str, str]] = []  # (path, error)
        self.symlinks = self.special = self.filtered = self.dirs = 0
        # Where these directories lie in the walk's tree order (dedup.subtrees): sorting the
        # keys of a walk's `PackedDirs` puts them in the order of the sequential walk.
        self.tree_key: tuple[int, ...] = ()

    def __len__(self) -> int:
        """Return the number of files."""
        return len(self.sizes) // 8

    def pack(self) -> tuple:
        """Return the fields as a marshal-able tuple (`unpack` takes it back)."""
        return tuple(getattr(self, name) for name in self.__slots__)

    @classmethod
    def unpack(cls, fields: tuple) -> PackedDirs:
        """Return the `PackedDirs` whose `pack` gave *fields*."""
        out = cls()
        for name, value in zip(cls.__slots__, fields, strict=True):
            setattr(out, name, value)
        return out


class FileTable:
    """Every selected file of a scan, by index (0, 1, ...), in the order the walk listed them
    (a forked walk: its tasks in the order they came in; see `Sizing.candidates`)."""

    __slots__ = ("prefixes", "names", "dir_root", "dir_dev", "file_dir", "name_off", "name_len",
                 "size", "ino", "mtime", "dev_of", "_devs", "linked")

    def __init__(self) -> None:
        self.prefixes: list[str] = []  # per directory: its path ending in "/" ("" for a root file)
        self.names: list[str] = []  # per directory: its files' names joined by "\0"
        self.dir_root = array("I")  # per directory: index of the command-line root
        self.dir_dev = array("Q")  # per directory: the device of its files
        self.file_dir = array("I")  # per file: its directory
        self.name_off = array("I")  # per file: where its name starts in its directory's names
        self.name_len = array("H")
        self.size = array("q")
        self.ino = array("Q")
        self.mtime = array("q")
        self.dev_of: dict[int, int] = {}  # file index -> device, for files not on their dir's device
        self._devs: dict[int, int] = {}  # one int object per device (shared by every record)
        # Files that may be another scanned path's file too: more than one link, reached
        # through a symlink, or a root file. Any other two paths are two files.
        self.linked: set[int] = set()

    def __len__(self) -> int:
        return len(self.size)

    def add_dir(self, prefix: str, root: int, dev: int, names: list[str], sizes: Iterable[int],
                inos: Iterable[int], mtimes: Iterable[int],
                other_devs: Iterable[tuple[int, int]] = (), linked: Iterable[int] = ()) -> int:
        """Append one directory's files; return the index of the first. *other_devs* holds
        (position in *names*, device) for files on another device than *dev*."""
        first = len(self.size)
        d = len(self.prefixes)
        self.prefixes.append(prefix)
        joined = "\0".join(names)
        self.names.append(joined)
        self.dir_root.append(root)
        self.dir_dev.append(dev)
        lens = [len(n) for n in names]
        offs = [0] * len(lens)
        at = 0
        for i, n in enumerate(lens):
            offs[i] = at
            at += n + 1
        self.file_dir.extend([d] * len(lens))
        self.name_off.extend(offs)
        self.name_len.extend(lens)
        self.size.extend(sizes)
        self.ino.extend(inos)
        extend_ns(self.mtime, mtimes)
        for pos, other in other_devs:
            self.dev_of[first + pos] = other
        self.linked.update(first + pos for pos in linked)
        return first

    def add_packed(self, dirs: PackedDirs) -> int:
        """Append the directories of a `PackedDirs` (columns built by a walk task: machine
        arrays copied as they are, no loop per name); return the index of the first file."""
        first = len(self.size)
        base = len(self.prefixes)
        self.prefixes.extend(dirs.prefixes)
        self.names.extend(dirs.names)
        self.dir_root.frombytes(dirs.roots)
        self.dir_dev.frombytes(dirs.devs)
        rel = array("I")
        rel.frombytes(dirs.file_dir)
        self.file_dir.extend(array("I", map(base.__add__, rel)))
        self.name_off.frombytes(dirs.name_off)
        self.name_len.frombytes(dirs.name_len)
        self.size.frombytes(dirs.sizes)
        self.ino.frombytes(dirs.inos)
        self.mtime.frombytes(dirs.mtimes)
        for pos, dev in dirs.other_devs:
            self.dev_of[first + pos] = dev
        self.linked.update(first + pos for pos in dirs.linked)
        return first

    def path(self, i: int) -> str:
        """Return the path of file *i*."""
        d = self.file_dir[i]
        off = self.name_off[i]
        return self.prefixes[d] + self.names[d][off : off + self.name_len[i]]

    def paths(self, rows: Iterable[int]) -> list[str]:
        """Return the paths of files *rows*, in order (`path` without a call per file: the head
        stage builds one for every small candidate)."""
        file_dir, name_off, name_len = self.file_dir, self.name_off, self.name_len
        prefixes, names = self.prefixes, self.names
        out = []
        append = out.append
        for i in rows:
            d = file_dir[i]
            off = name_off[i]
            append(prefixes[d] + names[d][off : off + name_len[i]])
        return out

    def dev(self, i: int) -> int:
        dev = self.dev_of.get(i) if self.dev_of else None
        if dev is None:
            dev = self.dir_dev[self.file_dir[i]]
        return self._devs.setdefault(dev, dev)

    def record(self, i: int, size: int | None = None) -> Record:
        """Return file *i* as a record; *size* (its size) lets a group share one int object."""
        d = self.file_dir[i]
        off = self.name_off[i]
        return (self.prefixes[d] + self.names[d][off : off + self.name_len[i]],
                self.size[i] if size is None else size, self.dev(i), self.ino[i], self.mtime[i],
                self.dir_root[d])

    def records(self, indices: Iterable[int], size: int | None = None) -> list[Record]:
        """Return the records of *indices*, in order."""
        record = self.record
        return [record(i, size) for i in indices]

    def packed_group(self, indices: Iterable[int], size: int) -> tuple[str, bytes]:
        """Return the paths (joined by NUL) and numbers of files *indices* — of one size, none
        a hard link of another — in `FileEntry.order_key` order: `DuplicateGroup.packed`'s
        form, made without a record per file (a forked small-file task makes every group)."""
        file_dir, name_off, name_len = self.file_dir, self.name_off, self.name_len
        prefixes, names, dir_root = self.prefixes, self.names, self.dir_root
        rows = []
        for i in indices:
            d = file_dir[i]
            off = name_off[i]
            rows.append((dir_root[d], prefixes[d] + names[d][off : off + name_len[i]], i))
        if all(row[1].isascii() for row in rows):
            rows.sort()  # ASCII orders as its bytes; no two rows share a path
        else:
            rows.sort(key=lambda row: (row[0], os.fsencode(row[1])))
        pack, dev, ino, mtime = ENTRY_NUMBERS.pack, self.dev, self.ino, self.mtime
        return ("\0".join([row[1] for row in rows]),
                b"".join([pack(size, dev(i), ino[i], mtime[i], root) for root, _, i in rows]))

    def file_id(self, i: int) -> tuple[int, int]:
        return (self.dev(i), self.ino[i])


class SizeBuckets:
    """Files by size as the scan adds them — one index alone, an array once a size repeats
    (most sizes are unique: an int costs no array) — and the sizes that repeat, in the order
    they did (what the candidates are made of, without a pass over every size)."""

    __slots__ = ("by_size", "repeated")

    def __init__(self) -> None:
        self.by_size: dict[int, int | array] = {}
        self.repeated: list[int] = []

    def add(self, sizes: Iterable[int], first: int) -> None:
        """File rows first, first + 1, ... of *sizes*."""
        by_size = self.by_size
        get = by_size.get
        for index, size in enumerate(sizes, first):
            bucket = get(size)
            if bucket is None:
                by_size[size] = index
            elif type(bucket) is int:
                by_size[size] = array("I", (bucket, index))
                self.repeated.append(size)
            else:
                bucket.append(index)

    def add_int64s(self, sizes: bytes, first: int) -> None:
        """`add` of sizes given as machine int64s (a `PackedDirs`' column), in C where built."""
        if add_sizes is not None:
            add_sizes(self.by_size, self.repeated, sizes, first)
        else:
            column = array("q")
            column.frombytes(sizes)
            self.add(column, first)

    def clear(self) -> None:
        """Forget every file."""
        self.by_size.clear()
        self.repeated.clear()
