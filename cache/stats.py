"""Frozen statistics records shared by PersistentLRU, memoize and `python -m cache`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LRUStats:
    """A snapshot of a PersistentLRU: use counters since open, and the state of its file."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int  # key + value bytes of the live entries (what max_bytes bounds)
    capacity: int | None
    max_bytes: int | None
    file_bytes: int  # size of the log file, live and dead records
    live_file_bytes: int  # bytes of the records that would survive a compaction
    compactions: int
    torn_tail_bytes: int  # cut off at open: a write interrupted by a crash
    salvaged_records_lost: int  # records lost to mid-file damage, when opened with salvage=True

    @property
    def dead_ratio(self) -> float:
        """Fraction of the file that compaction would reclaim."""
        return 0.0 if not self.file_bytes else 1 - self.live_file_bytes / self.file_bytes


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """What a memoized function's cache_info() returns (the functools.lru_cache fields)."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int
