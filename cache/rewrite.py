"""Compaction's last step for a log: swap the compacted file in over PATH and continue on it.

The mixin RecordLog compacts with (cache/log.py). The new file itself is written by
cache/compact.py; this part renames it in and moves the open log (descriptor, map, sequence
numbers, end) over to it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from cache.compact import copy_compacted, fsync_dir, write_compacted
from cache.errors import StoreWriteError

# The log's logger (as cache/growth.py and cache/replay.py): its messages keep their name.
log = logging.getLogger("cache.log")


class LogRewrite:
    """Replace an open log's file by a compacted one, atomically, and continue on the new file."""

    # Set up by RecordLog (its state, shared with the appending and opening code).
    path: str
    readonly: bool
    meta: dict[str, Any]
    first_seq: int
    next_seq: int
    end: int
    _fd: int
    _mm: Any
    _mapped: int
    _broken: str | None

    def rewrite(self, items: Iterable[tuple[int, bytes, bytes]]) -> list[tuple[int, int]]:
        """Replace the file by one holding just *items*, atomically; return each one's (offset, length).

        Writes PATH.compact, fsyncs it, renames it over PATH and fsyncs the directory: a crash at
        any point leaves either the old file or the new one, whole. Sequence numbers continue.
        """
        if self.readonly:
            raise StoreWriteError(f"{self.path} is open read-only")
        first_seq = self.next_seq
        locs, seq, at = write_compacted(self.path + ".compact", first_seq, self.meta, items, self.path)
        self._swap_in(first_seq, seq, at)
        return locs

    def copy_live(self, bounds_key: bytes, locations: list[Any]) -> list[int]:
        """Replace the file, atomically as `rewrite` does, by one holding a BOUNDS record with
        *bounds_key*, then a copy of each PUT record at *locations* ((offset, length, key), in that
        order); return their new offsets.

        The key and value bytes are copied from the map as they are, behind new headers; their
        CRCs are carried over, not recomputed (cache/compact.py), so the values need no checking
        here: damage stays detectable in the new file.
        """
        if self.readonly:
            raise StoreWriteError(f"{self.path} is open read-only")
        first_seq = self.next_seq
        moved, seq, at = copy_compacted(
            self.path + ".compact", first_seq, self.meta, bounds_key, self._mm if self._mapped else None,
            self._fd, locations, self.path,
        )
        self._swap_in(first_seq, seq, at)
        return moved

    def _swap_in(self, first_seq: int, seq: int, at: int) -> None:
        """Rename the written PATH.compact over PATH and continue on it (sequence numbers from
        *first_seq* to *seq*, *at* bytes)."""
        tmp = self.path + ".compact"
        os.replace(tmp, self.path)
        fsync_dir(self.path)
        new_fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        self._wait_prefill()
        self._unmap()
        os.close(self._fd)
        self._fd = new_fd
        self.first_seq, self.next_seq, self.end = first_seq, seq, at
        self.forget_recent()
        self._broken = None
        try:
            self._grow(at)
        except StoreWriteError as exc:
            # The swap is done and the new locations hold: reads use pread until an append can
            # grow the file (and reports the error then, if it persists).
            log.warning("%s: %s", self.path, exc)
