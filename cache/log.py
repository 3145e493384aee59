"""The append-only record log: the storage layer under PersistentLRU and dedup's hash cache.

Durability — the one place where each setting's guarantee is stated (tests/cache/test_lru_crash.py
checks the first two with kill -9; tests/cache/test_log_prealloc.py the file a crash leaves):

    "process" (default)  every append is stored into a shared memory map of the file before the
                         call returns. A store into a MAP_SHARED mapping lands in the kernel's page
                         cache at once, exactly where a write() would put it, so a kill -9 of the
                         process at any moment loses nothing acknowledged, at no syscall per append.
                         A power loss or kernel crash may lose the writes of the last few seconds
                         (the kernel's writeback window) but never leaves a damaged file: a torn
                         tail is cut off on open.
    "fast"               as "process" for puts, deletes and clears; read touches (recency only) are
                         kept in memory and written in batches of at most FAST_TOUCH_BATCH, so a kill
                         -9 may forget the recency of up to that many most recent reads.
    "fsync"              every append is also flushed to stable storage (msync of the pages it
                         touched) before the call returns, so an acknowledged write survives a power
                         loss. About 50x slower (bench/cache).

The writer grows the file ahead of its appends (cache/growth.py); a clean close truncates the file
to its last record. Opening replays and checks every record (cache/replay.py).

Reads are verified, and the latest values read remembered, by cache/reads.py. Compaction writes the
new file aside, synced (cache/compact.py), and renames it in (cache/rewrite.py).

This class is the single owner's log (PersistentLRU(exclusive=True)): it registers as the only open
of PATH (cache/shared.py), so any other open, shared or exclusive, gets StoreLockedError.
cache/sharedlog.py builds the shared log (any number of processes) on it. Read-only opens take no
lock and never modify the file.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Literal

from cache import records as fmt
from cache.compact import fsync_dir
from cache.crc import crc32 as _crc32
from cache.errors import (
    CorruptStoreError,
    ForeignFileError,
    StoreWriteError,
)
from cache.growth import _MAX_STEP as _MAX_STEP
from cache.growth import GROW as GROW
from cache.growth import GrowingMap
from cache.reads import RECENT_BYTES as RECENT_BYTES
from cache.reads import VerifiedReads
from cache.replay import ReplayReport, replay_records
from cache.rewrite import LogRewrite
from cache.shared import SharedFile

Durability = Literal["fast", "process", "fsync"]
DURABILITIES: tuple[str, ...] = ("fast", "process", "fsync")
FAST_TOUCH_BATCH = 64
_PAGE = mmap.ALLOCATIONGRANULARITY
_FILE_MODE = 0o600
_HEAD_SIZE = fmt.RECORD_HEADER_SIZE
_pack_fields = struct.Struct("<BQII").pack  # the fields of a record header that head_crc covers
_pack_crcs = struct.Struct("<II").pack
_pack_head = struct.Struct("<IIBQII").pack  # a whole record header: body_crc, head_crc, fields
_TOUCH = fmt.TOUCH


class RecordLog(VerifiedReads, LogRewrite, GrowingMap):
    """An open record log: append records, read one back verified, replay, compact.

    Not thread-safe by itself: its owner serializes calls (PersistentLRU holds a lock).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        meta: dict[str, Any],
        on_record: Callable[[fmt.Record], None],
        durability: Durability = "process",
        readonly: bool = False,
        salvage: bool = False,
        reserve: Callable[[int, int, int], None] = os.posix_fallocate,
    ) -> None:
        """Open (or create) the log at *path* and feed every intact record to *on_record*, in order.

        *meta* is stored in a new file's header; an existing file's header metadata is in `self.meta`.
        *reserve* (posix_fallocate's signature) is the seam tests use to inject a full disk.
        """
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, not {durability!r}")
        self.path = os.fspath(path)
        self.durability = durability
        self.readonly = readonly
        self.report = ReplayReport()
        self._reserve = reserve
        self.closed = False  # True once close() has run (a plain attribute: the hot paths read it)
        self._fd = -1
        self._owner: SharedFile | None = None
        self._broken: str | None = None
        self._mm: mmap.mmap | None = None
        self._mapped = 0  # bytes of the file mapped (the whole file, while a writer has a map)
        # Appends ending at or below this need nothing but a store into the map (not fsync, healthy).
        self._limit = 0
        self._prefill_thread: threading.Thread | None = None
        self._unmappable = False  # set when the filesystem refuses a shared map: pwrite instead
        # The values read last, verified, by offset (oldest first): see RECENT_BYTES (cache/reads.py).
        self._recent: OrderedDict[int, bytes] = OrderedDict()  # popitem(last=False) is O(1)
        # A remembered value by offset, or None: the dict's own get, bound once (the dict is
        # cleared, never replaced, so a caller may keep this; cache/persistent.py's get does).
        self.recent_get = self._recent.get
        self._recent_size = 0
        if not readonly:
            self._lock()
        try:
            self._open(meta, on_record, salvage)
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _lock(self) -> None:
        # The single owner's registration (cache/shared.py): refused while any other open, shared or
        # exclusive, holds the file; released by the kernel when this process dies.
        self._owner = SharedFile(self.path, exclusive=True)

    def _open(self, meta: dict[str, Any], on_record: Callable[[fmt.Record], None], salvage: bool) -> None:
        if not self.readonly:
            # A compaction cut off by a crash leaves its temporary file; the store itself is whole.
            try:
                os.unlink(self.path + ".compact")
            except FileNotFoundError:
                pass
        flags = os.O_RDONLY if self.readonly else os.O_RDWR
        try:
            self._fd = os.open(self.path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            if self.readonly:
                raise CorruptStoreError(self.path, "no such file") from None
            self._create(meta, first_seq=1)
            self._fd = os.open(self.path, flags | os.O_CLOEXEC)
        except IsADirectoryError:
            raise ForeignFileError(self.path, "is a directory") from None
        except OSError as exc:
            raise StoreWriteError(f"{self.path}: cannot open: {exc.strerror}") from exc
        size = os.fstat(self._fd).st_size
        if size == 0:
            # A store is never empty (its header is written aside and renamed in), so an empty file
            # is someone else's, or a store truncated to nothing: refuse it rather than overwrite it.
            raise ForeignFileError(self.path, "empty file, not a store (remove it to start a new one)")
        head = os.pread(self._fd, fmt.min_header_size() + fmt.MAX_META_SIZE, 0)
        try:
            header = fmt.decode_header(head)
        except fmt.FormatError as err:
            cls = ForeignFileError if err.foreign else CorruptStoreError
            raise cls(self.path, err.detail, err.offset) from None
        self.meta: dict[str, Any] = header.meta
        self.first_seq = header.first_seq
        self._replay(header.size, size, on_record, salvage)
        if not self.readonly:
            self._grow(self.end)

    def _create(self, meta: dict[str, Any], first_seq: int) -> None:
        # Written aside and renamed, so a crash never leaves a file with half a header at `path`.
        tmp = self.path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
        try:
            os.write(fd, fmt.encode_header(first_seq, meta))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path)

    def _replay(self, start: int, size: int, on_record: Callable[[fmt.Record], None], salvage: bool) -> None:
        fd = self._fd
        good_end, self.next_seq = replay_records(
            fd, self.path, start, size, self.first_seq, on_record, salvage, self.report
        )
        self.end = good_end
        if not self.readonly and size != good_end:
            os.ftruncate(fd, good_end)
            if self.durability == "fsync":
                os.fsync(fd)

    # -- appending and reading -----------------------------------------------------------------

    def append(self, kind: int, key: bytes, value: bytes = b"") -> tuple[int, int]:
        """Append one record; return its (offset, length) once the OS has it (and disk, with fsync)."""
        klen, vlen = len(key), len(value)
        if klen > fmt.MAX_KEY_SIZE or vlen > fmt.MAX_VALUE_SIZE:
            fmt.encode_record(kind, 0, key, value)  # raises the clear ValueError
        seq = self.next_seq
        head_crc = _crc32(_pack_fields(kind, seq, klen, vlen))
        head = _pack_head(_crc32(value, _crc32(key, head_crc)), head_crc, kind, seq, klen, vlen) + key
        # _put, inlined, and the value stored as it is, after its header: no joined copy of it.
        start = self.end
        vstart = start + len(head)
        stop = vstart + vlen
        if stop > self._limit:
            start = self._store(head + value)
        else:
            mm = self._mm
            mm[start:vstart] = head  # type: ignore[index]
            mm[vstart:stop] = value  # type: ignore[index]
            self.end = stop
        self.next_seq = seq + 1
        return start, _HEAD_SIZE + klen + vlen

    def append_touches(self, keys: list[bytes], then: tuple[int, bytes, bytes] | None = None) -> tuple[int, int]:
        """Append TOUCH records for *keys*, then optionally one more record, in one plain store.

        No MORE flags: a torn prefix of touches is still a true (shorter) history, which is all the
        "fast" setting promises. Return the (offset, length) of *then* (or of the last touch).
        """
        parts, seq = [], self.next_seq
        for key in keys:
            fields = _pack_fields(_TOUCH, seq, len(key), 0)
            head_crc = _crc32(fields)
            parts.append(_pack_crcs(_crc32(key, head_crc), head_crc) + fields + key)
            seq += 1
        if then is not None:
            parts.append(fmt.encode_record(then[0], seq, then[1], then[2]))
            seq += 1
        self._store(b"".join(parts))
        self.next_seq = seq
        return self.end - len(parts[-1]), len(parts[-1])

    def append_touch(self, key: bytes) -> None:
        """Append a TOUCH record for *key*: the read hot path's store, with encode_record inlined."""
        seq, klen = self.next_seq, len(key)
        head_crc = _crc32(_pack_fields(_TOUCH, seq, klen, 0))
        data = _pack_head(_crc32(key, head_crc), head_crc, _TOUCH, seq, klen, 0) + key
        start = self.end  # _put, inlined
        stop = start + _HEAD_SIZE + klen
        if stop > self._limit:
            self._store(data)
        else:
            self._mm[start:stop] = data  # type: ignore[index]
            self.end = stop
        self.next_seq = seq + 1

    def append_many(self, items: Iterable[tuple[int, bytes, bytes]]) -> list[tuple[int, int]]:
        """Append several records in one all-or-nothing store; return each one's (offset, length)."""
        batch = list(items)
        if not batch:
            return []
        chunks, locs = [], []
        seq, at, last = self.next_seq, 0, len(batch) - 1
        for i, (kind, key, value) in enumerate(batch):
            data = fmt.encode_record(kind if i == last else kind | fmt.MORE, seq, key, value)
            chunks.append(data)
            locs.append((at, len(data)))
            seq += 1
            at += len(data)
        offset = self._store(b"".join(chunks))
        self.next_seq = seq
        return [(offset + rel, length) for rel, length in locs]

    def _put(self, data: bytes) -> int:
        """The hot path of `_store`: a plain copy into the map while it has room (`_limit` is 0
        whenever a store needs more: read-only, broken, fsync, no map); return the offset."""
        start = self.end
        stop = start + len(data)
        if stop > self._limit:
            return self._store(data)
        self._mm[start:stop] = data  # type: ignore[index]
        self.end = stop
        return start

    def _store(self, data: bytes) -> int:
        """Store *data* at the end of the log, growing the file first if needed; return its offset."""
        if self.readonly:
            raise StoreWriteError(f"{self.path} is open read-only")
        if self._broken:
            raise StoreWriteError(f"{self.path}: store unusable after a failed write: {self._broken}")
        start = self.end
        stop = start + len(data)
        if stop > self._mapped:
            self._grow(stop)
            if self._unmappable:
                return self._write_at(start, data)
        mm = self._mm
        assert mm is not None
        mm[start:stop] = data
        if self.durability == "fsync":
            at = start - start % _PAGE
            try:
                mm.flush(at, stop - at)
            except OSError as exc:
                # Take the record back, so nothing unacknowledged stays behind.
                mm[start:stop] = bytes(len(data))
                raise StoreWriteError(f"{self.path}: write failed: {exc.strerror or exc}") from exc
        self.end = stop
        return start

    def _write_at(self, start: int, data: bytes) -> int:
        """The path for a file that cannot be mapped: pwrite, and take back a partial write."""
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                done += os.pwrite(self._fd, view[done:], start + done)
            if self.durability == "fsync":
                os.fdatasync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)  # nothing unacknowledged stays behind
            except OSError as undo:
                self._broken = f"could not cut back a partial write: {undo.strerror}"
            raise StoreWriteError(f"{self.path}: write failed: {exc.strerror or exc}") from exc
        self.end = start + len(data)
        return start

    def sync(self) -> None:
        """Flush everything appended so far to stable storage."""
        if not self.readonly and self._fd >= 0:
            if self._mm is not None:
                self._mm.flush()
            os.fsync(self._fd)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush per the durability setting, cut the preallocated tail, close, release the lock."""
        self.closed = True
        self.forget_recent()
        if self._fd >= 0:
            try:
                self._wait_prefill()
                self._unmap()
                if not self.readonly and not self._broken and hasattr(self, "end"):
                    os.ftruncate(self._fd, self.end)
                    if self.durability == "fsync":
                        os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.close()  # closing the descriptor releases the locks
