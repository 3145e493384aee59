"""Pure value types shared by every stage: scanned files, problems, groups, statistics."""

from __future__ import annotations

import os
import struct
import sys
from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

set_field = object.__setattr__  # sets a field of a FrozenValue (its own __setattr__ refuses)


def _frozen(name: str, verb: str = "assign to") -> AttributeError:
    from dataclasses import FrozenInstanceError  # lazy: only a misuse needs it

    return FrozenInstanceError(f"cannot {verb} field {name!r}")


def _rebuild(cls: type, values: tuple) -> object:
    value = object.__new__(cls)
    for name, item in zip(cls.__slots__, values, strict=True):
        set_field(value, name, item)
    return value


class FrozenValue:
    """Base of the frozen value types here: the fields are the class's `__slots__`, set once by
    its `__init__`; compared, hashed, shown and pickled by value, as frozen dataclasses are.

    Written out rather than made by `dataclasses`: importing it and building the classes cost
    about 15 ms of every command-line run, 2% of a warm run on the pyenv tree.
    """

    __slots__ = ()

    def _fields(self) -> tuple:
        return tuple([getattr(self, name) for name in self.__slots__])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise _frozen(name)

    def __delattr__(self, name: str) -> None:
        raise _frozen(name, "delete")

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), self._fields()))

    def replace(self, **changes: object) -> FrozenValue:
        """Return a copy with the fields named in *changes* replaced (`dataclasses.replace`)."""
        value = object.__new__(type(self))
        for name in self.__slots__:
            set_field(value, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"unknown fields: {', '.join(changes)}")
        return value


class FileEntry(namedtuple("FileEntry", ["path", "size", "dev", "ino", "mtime_ns", "root"],
                           defaults=(0,))):
    """One scanned path of a regular file, with the stat fields that identify its content version:
    path (os.fsdecode form: undecodable bytes are surrogate escapes), size, dev, ino, mtime_ns,
    and root (the index of the command-line root it was found under: it orders --keep first).

    A named tuple: the pipeline keeps plain tuples of this layout for the files it scans (a tenth of
    the cost of building an object per file) and makes `FileEntry`s only for the files it reports.
    Made by `collections.namedtuple` (imported anyway: the array module imports collections.abc),
    not `typing.NamedTuple`: typing and what it imports cost every run about 5 ms.
    """

    __slots__ = ()
    if TYPE_CHECKING:
        path: str
        size: int
        dev: int
        ino: int
        mtime_ns: int
        root: int

    @property
    def file_id(self) -> tuple[int, int]:
        """Return (device, inode): paths with the same id are hard links of one file."""
        return (self.dev, self.ino)

    def order_key(self) -> tuple[int, bytes]:
        """Return the sort key that defines "first": root order, then the path's bytes."""
        return (self.root, os.fsencode(self.path))


class FileProblem(FrozenValue):
    """A path that could not be scanned or read, and why (one line, no traceback)."""

    __slots__ = ("path", "error")
    path: str
    error: str

    def __init__(self, path: str, error: str) -> None:
        set_field(self, "path", path)
        set_field(self, "error", error)


# A packed entry's numbers: size, device, inode, mtime_ns, root (struct, native byte order).
_NUMBERS = struct.Struct("=qQQqq")
_ROOT = struct.Struct("=32xq")  # the root alone
ENTRY_NUMBERS = _NUMBERS  # public: what makes a `DuplicateGroup.packed` group's numbers
# What os.fsencode uses, called directly: ordering the pyenv tree's 17,000 groups through
# os.fsencode and `first` took 0.04 s of the run.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_LARGEST = 2**63 - 1  # a size's complement in packed_order (sizes are st_size: signed 64-bit)


class DuplicateGroup:
    """Two or more distinct files (device, inode) of one size with identical content.

    `entries` lists every scanned path of those files, in `FileEntry.order_key` order. A group
    keeps them packed — its paths in one string, its numbers in one bytes object — and builds
    the `FileEntry`s on each access: a reported file costs about 130 bytes instead of 260 (a
    tuple, a path string and two ints each), and a report of a million duplicates is not held
    as a million tuples. Immutable, compared and hashed by (size, entries).
    """

    __slots__ = ("size", "_paths", "_numbers", "_files")

    size: int
    _paths: str
    _numbers: bytes
    _files: int  # distinct files when the maker knew them (-1: counted when asked)

    def __init__(self, size: int, entries: Iterable[FileEntry], *, files: int = -1) -> None:
        entries = tuple(entries)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "_paths", "\0".join([e[0] for e in entries]))
        pack = _NUMBERS.pack
        object.__setattr__(self, "_numbers", b"".join(
            [pack(e[1], e[2], e[3], e[4], e[5]) for e in entries]))
        object.__setattr__(self, "_files", files)

    @classmethod
    def packed(cls, size: int, paths: str, numbers: bytes, files: int = -1) -> DuplicateGroup:
        """Return the group whose packed form (`pack`) is *paths* and *numbers*; *files*, when
        given, is its number of distinct files (`file_count`)."""
        group = object.__new__(cls)
        # The slots' own setters: a forked run makes every group here, one after another, in
        # this process (pyenv tree: 17,000 groups, 30 -> 17 ms with object.__setattr__ before).
        _SET_SIZE(group, size)
        _SET_PATHS(group, paths)
        _SET_NUMBERS(group, numbers)
        _SET_FILES(group, files)
        return group

    def pack(self) -> tuple[int, str, bytes]:
        """Return (size, paths joined by NUL, numbers): what `packed` takes back (marshal-able)."""
        return self.size, self._paths, self._numbers

    @property
    def entries(self) -> tuple[FileEntry, ...]:
        """Return every scanned path of the group's files as `FileEntry`s, in order."""
        if not self._numbers:
            return ()
        make = tuple.__new__
        return tuple([make(FileEntry, (path, *numbers)) for path, numbers in zip(
            self._paths.split("\0"), _NUMBERS.iter_unpack(self._numbers), strict=True)])

    @property
    def paths(self) -> list[str]:
        """Return every path of the group, in order."""
        return self._paths.split("\0") if self._numbers else []

    @property
    def first(self) -> tuple[int, str]:
        """Return (root, path) of the first entry: what orders groups of one size."""
        return _NUMBERS.unpack_from(self._numbers)[4], self._paths.partition("\0")[0]

    @staticmethod
    def packed_order(size: int, paths: str, numbers: bytes) -> bytes:
        """Return bytes that order groups in `pack`'s form as `order_key` orders the groups
        (a plain bytes compare: a forked run's processes make them, and one sort orders all)."""
        end = paths.find("\0")
        first = paths if end < 0 else paths[:end]
        return ((_LARGEST - size).to_bytes(8, "big")
                + _ROOT.unpack_from(numbers)[0].to_bytes(8, "big")
                + first.encode(_FS_ENCODING, _FS_ERRORS))

    def order_key(self) -> tuple[int, int, bytes]:
        """Return the key that orders a report's groups: largest first, then by the first
        entry's `FileEntry.order_key`."""
        paths = self._paths
        end = paths.find("\0")
        first = paths if end < 0 else paths[:end]
        return (-self.size, _ROOT.unpack_from(self._numbers)[0],
                first.encode(_FS_ENCODING, _FS_ERRORS))

    @property
    def file_count(self) -> int:
        """Return the number of distinct files (inodes) in the group."""
        if self._files >= 0:  # known from the candidate group (one record per file)
            return self._files
        return len({(n[1], n[2]) for n in _NUMBERS.iter_unpack(self._numbers)})

    @property
    def wasted_bytes(self) -> int:
        """Return the bytes that linking or removing all but one file would free."""
        return self.size * (self.file_count - 1)

    def __setattr__(self, name: str, value: object) -> None:
        raise _frozen(name)

    def __delattr__(self, name: str) -> None:
        raise _frozen(name, "delete")

    def __eq__(self, other: object) -> bool:
        if type(other) is not DuplicateGroup:
            return NotImplemented
        return (self.size, self._paths, self._numbers) == (other.size, other._paths,
                                                           other._numbers)

    def __hash__(self) -> int:
        return hash((self.size, self._paths, self._numbers))

    def __repr__(self) -> str:
        return f"DuplicateGroup(size={self.size!r}, entries={self.entries!r})"

    def __reduce__(self) -> tuple:
        return (DuplicateGroup, (self.size, self.entries))


class DuplicateDir(FrozenValue):
    """Two or more directories whose subtrees hold the same relative paths with identical content."""

    __slots__ = ("size", "files", "paths")
    size: int  # bytes of regular files in one copy
    files: int  # regular files in one copy
    paths: tuple[str, ...]

    def __init__(self, size: int, files: int, paths: tuple[str, ...]) -> None:
        set_field(self, "size", size)
        set_field(self, "files", files)
        set_field(self, "paths", paths)


class SimilarPair(FrozenValue):
    """Two files that share *shared_bytes* of content-defined chunks (not identical files)."""

    __slots__ = ("paths", "sizes", "shared_bytes")
    paths: tuple[str, str]
    sizes: tuple[int, int]
    shared_bytes: int

    def __init__(self, paths: tuple[str, str], sizes: tuple[int, int], shared_bytes: int) -> None:
        set_field(self, "paths", paths)
        set_field(self, "sizes", sizes)
        set_field(self, "shared_bytes", shared_bytes)


class Stats(FrozenValue):
    """Counters of one run, as reported in the summary and the JSON "stats" object."""

    __slots__ = ("files", "dirs", "bytes_scanned", "groups", "duplicate_files", "wasted_bytes",
                 "bytes_read", "errors", "hard_links", "skipped_symlinks", "skipped_special",
                 "skipped_filtered", "elapsed_s")
    files: int  # regular-file paths selected for comparison
    dirs: int  # directories listed
    bytes_scanned: int  # total size of the selected paths' files
    groups: int
    duplicate_files: int  # files (inodes) in groups beyond one per group
    wasted_bytes: int
    bytes_read: int
    errors: int
    hard_links: int  # extra paths to an inode already seen
    skipped_symlinks: int
    skipped_special: int  # FIFOs, sockets, devices: never opened
    skipped_filtered: int  # outside --min/--max-size, --include/--exclude, or empty
    elapsed_s: float

    def __init__(self, files: int = 0, dirs: int = 0, bytes_scanned: int = 0, groups: int = 0,
                 duplicate_files: int = 0, wasted_bytes: int = 0, bytes_read: int = 0,
                 errors: int = 0, hard_links: int = 0, skipped_symlinks: int = 0,
                 skipped_special: int = 0, skipped_filtered: int = 0,
                 elapsed_s: float = 0.0) -> None:
        values = (files, dirs, bytes_scanned, groups, duplicate_files, wasted_bytes, bytes_read,
                  errors, hard_links, skipped_symlinks, skipped_special, skipped_filtered,
                  elapsed_s)
        for name, value in zip(self.__slots__, values, strict=True):
            set_field(self, name, value)

    def as_dict(self) -> dict[str, int | float]:
        """Return the counters as a JSON-ready dict (field order preserved)."""
        return {name: getattr(self, name) for name in self.__slots__}


class Report(FrozenValue):
    """The outcome of a run: groups, per-path problems, counters, policy; dirs and similar if asked."""

    __slots__ = ("groups", "problems", "stats", "policy", "dirs", "similar")
    groups: tuple[DuplicateGroup, ...]
    problems: tuple[FileProblem, ...]
    stats: Stats
    policy: dict[str, str]
    dirs: tuple[DuplicateDir, ...] | None  # with --dirs (groups inside them are folded)
    similar: tuple[SimilarPair, ...] | None  # with --similar

    def __init__(self, groups: tuple[DuplicateGroup, ...], problems: tuple[FileProblem, ...],
                 stats: Stats, policy: dict[str, str] | None = None,
                 dirs: tuple[DuplicateDir, ...] | None = None,
                 similar: tuple[SimilarPair, ...] | None = None) -> None:
        set_field(self, "groups", groups)
        set_field(self, "problems", problems)
        set_field(self, "stats", stats)
        set_field(self, "policy", {} if policy is None else policy)
        set_field(self, "dirs", dirs)
        set_field(self, "similar", similar)


_SET_SIZE, _SET_PATHS, _SET_NUMBERS, _SET_FILES = (
    DuplicateGroup.__dict__[name].__set__ for name in ("size", "_paths", "_numbers", "_files"))
