"""Frozen run configuration and the pure path/size selection rules it implies."""

from __future__ import annotations

from dedup.errors import UsageError
from dedup.model import FrozenValue, set_field

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    import re
    from typing import Literal

    HashName = Literal["mmh3", "sha256", "blake2b"]
HASH_NAMES: tuple[str, ...] = ("mmh3", "sha256", "blake2b")
WHOLE_LIMIT_TEXT = "64 KiB"  # dedup.hashing.WHOLE_LIMIT, in words


class ScanOptions(FrozenValue):
    """What to scan and how to compare; validated on construction (raises `UsageError`)."""

    __slots__ = ("follow_symlinks", "one_file_system", "include_empty", "min_size", "max_size",
                 "include", "exclude", "hash_name", "verify", "threads", "io_threads",
                 "cache_path")
    follow_symlinks: bool
    one_file_system: bool
    include_empty: bool
    min_size: int
    max_size: int | None
    include: tuple[str, ...]  # globs on the whole path; a file must match one if any given
    exclude: tuple[str, ...]  # globs on the whole path; prunes directories too
    hash_name: HashName
    verify: bool
    threads: int  # readers of large files (compared in lockstep)
    io_threads: int | None  # walk and small-file readers; None: by device (dedup.device)
    cache_path: str | None

    def __init__(self, *, follow_symlinks: bool = False, one_file_system: bool = False,
                 include_empty: bool = False, min_size: int = 0, max_size: int | None = None,
                 include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
                 hash_name: HashName = "mmh3", verify: bool = False, threads: int = 2,
                 io_threads: int | None = None, cache_path: str | None = None) -> None:
        values = (follow_symlinks, one_file_system, include_empty, min_size, max_size, include,
                  exclude, hash_name, verify, threads, io_threads, cache_path)
        for name, value in zip(self.__slots__, values, strict=True):
            set_field(self, name, value)
        self._check()

    def _check(self) -> None:
        if self.min_size < 0:
            raise UsageError("--min-size must be >= 0")
        if self.max_size is not None and self.max_size < self.min_size:
            raise UsageError("--max-size must be >= --min-size")
        if self.hash_name not in HASH_NAMES:
            raise UsageError(f"unknown hash {self.hash_name!r} (choose from {', '.join(HASH_NAMES)})")
        if self.threads < 1:
            raise UsageError("--threads must be >= 1")
        if self.io_threads is not None and self.io_threads < 1:
            raise UsageError("--threads must be >= 1")

    def policy(self) -> dict[str, str]:
        """Return the effective policy in words, for the report header (comparable with peers)."""
        return {
            "empty files": "included" if self.include_empty else "ignored",
            "hidden files": "included",
            "hard links": "one file; every path listed; never a duplicate of itself",
            "symlinks": "followed (loops detected)" if self.follow_symlinks else "not followed",
            "special files": "never opened",
            "file systems": "one per root" if self.one_file_system else "all",
            "size": f">= {self.min_size}" + (f", <= {self.max_size}" if self.max_size is not None else ""),
            "hash": self.hash_name + (
                " + byte-for-byte verify of every group" if self.verify
                else f" (files over {WHOLE_LIMIT_TEXT} compared byte for byte)" if self.cache_path is None
                else " (full digests, cached)"),
        }


class PathSelection:
    """Pure include/exclude/size rules: which directories to enter and which files to compare."""

    __slots__ = ("_exclude", "_include", "_min", "_max", "_empty")

    def __init__(self, options: ScanOptions) -> None:
        self._exclude = _compile(options.exclude)
        self._include = _compile(options.include)
        self._min = options.min_size
        self._max = options.max_size
        self._empty = options.include_empty

    def enters_dir(self, path: str) -> bool:
        """Return False when *path* (a directory) matches an --exclude glob."""
        return self._exclude is None or not self._exclude.match(path)

    def selects_file(self, path: str, size: int) -> bool:
        """Return True when a file of *size* at *path* passes the size, empty and glob rules."""
        if (size == 0 and not self._empty) or size < self._min:
            return False
        if self._max is not None and size > self._max:
            return False
        if self._exclude is not None and self._exclude.match(path):
            return False
        return self._include is None or bool(self._include.match(path))


def _compile(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    # One alternation regex: one match call per path instead of one fnmatch per glob.
    if not globs:
        return None
    import fnmatch  # lazy, as re: only globs need them (re and what it imports: ~3 ms a run)
    import re

    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs), re.S)


_SIZE = r"^\s*(\d+)\s*([kmgtp]?)(i?b?)\s*$"  # re.I; compiled by the first parse_size


def parse_size(text: str) -> int:
    """Return the byte count of *text* like "0", "4096", "10K", "3MiB" (binary units); raise ValueError."""
    import re  # lazy: only --min-size and --max-size need it (re's imports: ~3 ms a run)

    m = re.match(_SIZE, text, re.I)
    if not m:
        raise ValueError(f"invalid size {text!r} (examples: 0, 4096, 10K, 3M, 1G)")
    power = "kmgtp".find(m.group(2).lower()) + 1 if m.group(2) else 0
    return int(m.group(1)) * 1024**power
