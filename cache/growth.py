"""How a writer's record log file grows and is mapped ahead of its appends.

The writer grows the file ahead of its appends in GROW-aligned steps: posix_fallocate reserves the
blocks (so a full disk is a clear StoreWriteError when the file grows, never a SIGBUS on a store into
a hole), the new span is zero-filled, and the map is extended. A clean close truncates the file to its
last record. After a crash the file ends in zeros up to a GROW boundary: replay reads that zero tail as
the clean end of the log, and counts as torn only the bytes of a record cut off before it (its
checksums fail; an all-zero span is never an intact record, since a record's header checksum of zeros
is not zero). Read-only opens never map the file (a writer may truncate it), they use pread. A
helper thread prepares the next step ahead of the appends; compaction hands its writes to another.
On a filesystem that refuses shared writable maps the writer falls back to one pwrite per append,
with the same promises.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from collections.abc import Callable

from cache.errors import StoreWriteError, UnsupportedFilesystemError

log = logging.getLogger("cache.log")

GROW = 64 << 10  # the writer's file size is a multiple of this while it is open (see above)
_MAX_STEP = 8 << 20  # the largest step a helper prepares ahead of the appends
_ZEROS = memoryview(bytes(1 << 20))
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # <linux/mman.h>; Python 3.11 lacks the name


def data_end(fd: int, start: int, size: int) -> int:
    """Return the end of the last non-zero byte at or after *start* (or *start*): a crash's zero tail."""
    end = size
    while end > start:
        at = max(start, end - len(_ZEROS))
        chunk = os.pread(fd, end - at, at).rstrip(b"\0")
        if chunk:
            return at + len(chunk)
        end = at
    return start


class GrowingMap:
    """The file growth and the shared map of a RecordLog (a mixin: the attributes are RecordLog's)."""

    path: str
    durability: str
    end: int
    _fd: int
    _mm: mmap.mmap | None
    _mapped: int
    _limit: int
    _broken: str | None
    _unmappable: bool
    _reserve: Callable[[int, int, int], None]
    _prefill_thread: threading.Thread | None

    def _grow(self, need: int) -> None:
        """Make the file (and the map) reach past *need*, then start preparing the next GROW step."""
        if self._unmappable:
            return
        self._wait_prefill()
        fd = self._fd
        size = os.fstat(fd).st_size  # past the map when a prefill completed
        if size <= need:
            new = (need // GROW + 1) * GROW
            self._extend_or_fail(fd, size, new)
            size = new
        try:
            if self.durability == "fsync":
                os.fsync(fd)  # the new size and blocks, before a record in them is acknowledged
            if self._mm is None:
                try:
                    self._mm = mmap.mmap(fd, size)
                except OSError as exc:
                    # A filesystem without shared writable maps: fall back to one pwrite per
                    # append (the same promises, a syscall each) on a file kept to its records.
                    log.warning("%s: cannot map the file (%s); appending with pwrite", self.path, exc)
                    self._unmappable = True
                    os.ftruncate(fd, self.end)
                    return
            else:
                # resize() also ftruncates the file to *size*: exactly its size, no helper running.
                self._mm.resize(size)
        except (OSError, ValueError) as exc:
            raise StoreWriteError(f"{self.path}: cannot map the file: {exc}") from exc
        self._mapped = size
        self._limit = size if self.durability != "fsync" and not self._broken else 0
        # The next step is reserved and zero-filled by a helper thread while appends go on: the
        # kernel's work for fresh page-cache pages (measured: up to 5 ms a MiB here) runs on another
        # CPU, outside the GIL, instead of stalling an append every MiB.
        self._prefill_thread = threading.Thread(
            target=self._prefill, args=(fd, size), name="fanmill-log-prefill", daemon=True
        )
        self._prefill_thread.start()

    def _extend(self, fd: int, old: int, new: int, helper: bool = False) -> None:
        """Reserve and zero-fill [old, new) of the file; on failure give it back and raise OSError."""
        try:
            self._reserve(fd, old, new - old)
            # Zeros written now put the pages in the page cache: a store into them later costs no
            # page fault on a block the filesystem still has to convert (measured: 4x cheaper).
            at = old
            while at < new:
                at += os.pwrite(fd, _ZEROS[: min(len(_ZEROS), new - at)], at)
        except OSError:
            try:
                os.ftruncate(fd, old)  # give back what was reserved: the file stays as it was
            except OSError as undo:
                if not helper:  # beyond the map, a helper's leftover zeros harm nothing
                    self._broken = f"could not take back a failed extension: {undo.strerror}"
                    self._limit = 0
            raise

    def _extend_or_fail(self, fd: int, old: int, new: int) -> None:
        """_extend under the writer lock: a failure is the operation's StoreWriteError."""
        try:
            self._extend(fd, old, new)
        except OSError as exc:
            raise StoreWriteError(
                f"{self.path}: cannot grow the file to {new} bytes: {exc.strerror or exc}"
            ) from exc

    def _prefill(self, fd: int, size: int) -> None:
        # Runs in the helper thread; never beyond the map's end, so a store never meets a hole.
        try:
            # Steps grow with the file (an eighth of it, up to 8 MiB): a large log grows often, a
            # small one should not carry megabytes of zeros while open.
            step = max(GROW, min(_MAX_STEP, size // 8 // GROW * GROW))
            self._extend(fd, size, size + step, helper=True)
        except Exception:
            pass  # the next _grow extends in the caller's thread and reports the error there

    def _wait_prefill(self) -> None:
        thread, self._prefill_thread = self._prefill_thread, None
        if thread is not None:
            thread.join()

    def _unmap(self) -> None:
        self._limit = self._mapped = 0
        if self._mm is not None:
            mm, self._mm = self._mm, None
            mm.close()


class SharedGrowingMap(GrowingMap):
    """A shared log's growth: only ever grown, under the writer lock, and mapped again (a mixin).

    No helper thread (it would race the next writer), no mmap.resize (it truncates, which would
    SIGBUS the other processes); the file is cut back only by the last close (cache/sharedlog.py).
    Except for the sole open, which grows as a single owner does (see _grow).
    """

    def _zero_garbage(self, end: int) -> None:
        """Zero what a writer that died holding the lock stored past *end* (unacknowledged)."""
        size = os.fstat(self._fd).st_size
        stop = data_end(self._fd, end, size)
        at = end
        while at < stop:
            at += os.pwrite(self._fd, _ZEROS[: min(len(_ZEROS), stop - at)], at)

    sole: bool  # SharedRecordLog's: this open holds the file alone (cache/shared.py)

    def _grow(self, need: int) -> None:
        """Make the file reach past *need* (under the writer lock, never shrinking it) and map it."""
        self._wait_prefill()
        if self.sole and self._mm is not None:
            # The sole open is the file's only writer and only map until it lets go, and it waits
            # for its helper before it does (leave_sole, close): it grows the file as a single
            # owner does, the kernel's work of a step on the helper's CPU and the map resized in
            # place (its pages stay mapped). bench/cache's trace on the sole open spent 9% of its
            # time growing and mapping inline (118 of 1,280 ms).
            super()._grow(need)
            return
        fd = self._fd
        size = os.fstat(fd).st_size
        if size <= need:
            step = max(GROW, min(_MAX_STEP, size // 8 // GROW * GROW))
            new = (max(need, size + step - 1) // GROW + 1) * GROW
            self._extend_or_fail(fd, size, new)
            size = new
            if self.durability == "fsync":
                os.fsync(fd)
        self._map(size, self.end)

    def _map(self, size: int, tail: int) -> None:
        """Map the file's first *size* bytes (again, if it grew), its pages from *tail* on writable."""
        if self._mm is not None and self._mapped == size:
            return
        try:
            mm = mmap.mmap(self._fd, size)
        except OSError as exc:
            raise UnsupportedFilesystemError(f"{self.path}: cannot map the file for sharing: {exc}") from exc
        self._unmap()
        self._mm, self._mapped = mm, size
        self._limit = size if self.durability != "fsync" and not self._broken else 0
        # The zero tail past the published end is where every process appends and then follows the
        # others' records. Each process has its own map, so each took a page fault per page and
        # process there (a write fault, then a read fault), one at a time: MADV_POPULATE_WRITE
        # (Linux 5.14) maps the whole tail writable in one call instead. Nothing is written: the
        # pages hold the zeros _extend wrote. bench/cache, 100k operations, 3 alternated pairs:
        # 2/4/8 processes x1.27/x1.12/x1.09 ops/s (every pair >= 1.00), CPU per op -6 to -22%.
        start = max(0, tail - tail % mmap.PAGESIZE)
        if start < size:
            try:
                mm.madvise(_POPULATE_WRITE, start, size - start)
            except (OSError, ValueError):
                pass  # an older kernel or another system: pages fault in one at a time, as before


