"""Exceptions of the dedup package.

    DedupError                   a run cannot go on (bad options, broken cache, unsafe request)
     ├── UsageError              options that contradict each other or are out of range
     ├── UnsafeActionError       an action plan that would remove or replace the last copy
     └── HashCacheError          the --cache file cannot be opened or used

A file that cannot be read is *data*, not an exception: it becomes a `FileProblem` in the report.
"""

from __future__ import annotations


class DedupError(Exception):
    """Base class of every error dedup raises on purpose; the CLI prints it as one line."""


class UsageError(DedupError, ValueError):
    """Raised when options contradict each other or a value is out of range."""


class UnsafeActionError(DedupError):
    """Raised when an action plan would leave a duplicate group without any kept copy."""


class HashCacheError(DedupError):
    """Raised when the hash cache file cannot be opened, locked or read."""


class FileChangedError(OSError):
    """Raised inside hashing when a file's size no longer matches what the scan saw."""
