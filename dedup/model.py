"""Pure value types shared by every stage: scanned files, problems, groups, statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple


class FileEntry(NamedTuple):
    """One scanned path of a regular file, with the stat fields that identify its content version.

    A named tuple: the pipeline keeps plain tuples of this layout for the files it scans (a tenth of
    the cost of building an object per file) and makes `FileEntry`s only for the files it reports.
    """

    path: str  # os.fsdecode form: undecodable bytes are surrogate escapes
    size: int
    dev: int
    ino: int
    mtime_ns: int
    root: int = 0  # index of the command-line root it was found under (orders --keep first)

    @property
    def file_id(self) -> tuple[int, int]:
        """Return (device, inode): paths with the same id are hard links of one file."""
        return (self.dev, self.ino)

    def order_key(self) -> tuple[int, bytes]:
        """Return the sort key that defines "first": root order, then the path's bytes."""
        return (self.root, os.fsencode(self.path))


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A path that could not be scanned or read, and why (one line, no traceback)."""

    path: str
    error: str


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Two or more distinct files (device, inode) of one size with identical content.

    `entries` lists every scanned path of those files, in `FileEntry.order_key` order.
    """

    size: int
    entries: tuple[FileEntry, ...]

    @property
    def paths(self) -> list[str]:
        """Return every path of the group, in order."""
        return [e.path for e in self.entries]

    @property
    def file_count(self) -> int:
        """Return the number of distinct files (inodes) in the group."""
        return len({e.file_id for e in self.entries})

    @property
    def wasted_bytes(self) -> int:
        """Return the bytes that linking or removing all but one file would free."""
        return self.size * (self.file_count - 1)


@dataclass(frozen=True, slots=True)
class DuplicateDir:
    """Two or more directories whose subtrees hold the same relative paths with identical content."""

    size: int  # bytes of regular files in one copy
    files: int  # regular files in one copy
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimilarPair:
    """Two files that share *shared_bytes* of content-defined chunks (not identical files)."""

    paths: tuple[str, str]
    sizes: tuple[int, int]
    shared_bytes: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters of one run, as reported in the summary and the JSON "stats" object."""

    files: int = 0  # regular-file paths selected for comparison
    dirs: int = 0  # directories listed
    bytes_scanned: int = 0  # total size of the selected paths' files
    groups: int = 0
    duplicate_files: int = 0  # files (inodes) in groups beyond one per group
    wasted_bytes: int = 0
    bytes_read: int = 0
    errors: int = 0
    hard_links: int = 0  # extra paths to an inode already seen
    skipped_symlinks: int = 0
    skipped_special: int = 0  # FIFOs, sockets, devices: never opened
    skipped_filtered: int = 0  # outside --min/--max-size, --include/--exclude, or empty
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        """Return the counters as a JSON-ready dict (field order preserved)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of a run: groups, per-path problems, counters, policy; dirs and similar if asked."""

    groups: tuple[DuplicateGroup, ...]
    problems: tuple[FileProblem, ...]
    stats: Stats
    policy: dict[str, str] = field(default_factory=dict)
    dirs: tuple[DuplicateDir, ...] | None = None  # with --dirs (groups inside them are folded)
    similar: tuple[SimilarPair, ...] | None = None  # with --similar
