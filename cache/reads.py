"""Reading a record back from the log: verified against its checksums and key, recent values remembered.

The mixin RecordLog reads with (cache/log.py): it uses the log's map, descriptor and path, and
keeps the values read last by offset, so a hot key's value is copied and checked once.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from typing import Any

from cache import records as fmt
from cache.crc import crc32 as _crc32
from cache.errors import CacheError, CorruptStoreError

# Values read back (and verified) are remembered, the latest RECENT_BYTES of them, by offset: a record
# never changes, so reading it again would copy and check the same bytes. As SQLite's page cache does
# for diskcache, which gives each connection 8,192 pages (32 MiB; its sqlite_cache_size). A value is
# remembered only once it was read from the file and checked, never on a put. Forgotten when offsets
# change meaning (compaction, another generation, close). On bench/cache's trace (44 MiB live) 57% of
# hits found their value here with 2 MiB, 72% with 8 MiB: single process +15% ops/s against 2 MiB
# (median of 6 alternated pairs), 32 MiB another +5%. 8 MiB: a quarter of diskcache's page cache.
RECENT_BYTES = 8 << 20
_HEAD_SIZE = fmt.RECORD_HEADER_SIZE
_unpack_head = struct.Struct("<IIBQII").unpack_from  # a whole record header: body_crc, head_crc, fields


class VerifiedReads:
    """Read records back from an open log, verified; remember the latest RECENT_BYTES of values."""

    # Set up by RecordLog.__init__ (the log's state, shared with the appending and opening code).
    _recent: OrderedDict[int, bytes]
    recent_get: Any
    _recent_size: int
    _mm: Any
    _mapped: int
    _fd: int
    closed: bool
    path: str

    def read(self, offset: int, length: int, key: bytes) -> bytes:
        """Return the value of the record at *offset*: read back and verified (both checksums and
        the key), or, if it was read so recently that it is among the last RECENT_BYTES of values
        read, that value again."""
        value = self.recent_get(offset)
        if value is not None:
            return value  # type: ignore[no-any-return]
        value = self.read_verified(offset, length, key)
        self._recent[offset] = value
        self._recent_size += len(value)
        if self._recent_size > RECENT_BYTES:
            self._forget_recent()
        return value

    def read_verified(self, offset: int, length: int, key: bytes) -> bytes:
        """Read the record at *offset* back, verify both checksums and the key, return its value
        (compaction's read: nothing is remembered)."""
        # fmt.check_record, inlined and split: the value is copied out of the map once, as the
        # bytes returned; this is the read hot path.
        stop = offset + length
        kend = _HEAD_SIZE + len(key)
        if stop <= self._mapped:
            mm = self._mm
            head = mm[offset : offset + kend]  # type: ignore[index]
            value = mm[offset + kend : stop]  # type: ignore[index]
        elif self.closed:
            raise CacheError(f"{self.path}: the cache is closed")
        else:
            data = os.pread(self._fd, length, offset)
            head, value = data[:kend], data[kend:]
        if len(head) == kend:
            body_crc, head_crc, _kind, _seq, klen, vlen = _unpack_head(head)
            if (
                klen + _HEAD_SIZE == kend
                and vlen == len(value) == length - kend
                and _crc32(head[8:_HEAD_SIZE]) == head_crc
                and head[_HEAD_SIZE:] == key
                and _crc32(value, _crc32(key, head_crc)) == body_crc
            ):
                return value
        try:
            fmt.check_record(head + value, key)
        except fmt.FormatError as err:
            raise CorruptStoreError(self.path, err.detail, offset) from None
        raise CorruptStoreError(self.path, "record length differs from the index", offset)

    def _forget_recent(self) -> None:
        """Drop the values read longest ago until the rest fit in 7/8 of RECENT_BYTES (so that this
        runs once every few dozen reads, not at each)."""
        popitem, size, keep = self._recent.popitem, self._recent_size, RECENT_BYTES - RECENT_BYTES // 8
        while size > keep:
            size -= len(popitem(last=False)[1])
        self._recent_size = size

    def forget_recent(self) -> None:
        """Drop every remembered value: offsets are about to name records of another file."""
        self._recent.clear()
        self._recent_size = 0
