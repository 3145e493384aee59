"""ShmIndex: an LRU index in a shared map, as cache/ would build it (stdlib only); see shared_index_probe.py.

An open-addressing table (u32 entry numbers, linear probing, backward-shift deletion, zlib.crc32 of
the key bytes: Python's hash() differs per process) and a doubly linked recency list of 32-byte
entries, in one buffer. The key bytes stay in the log: an entry holds the offset of its record, and a
lookup compares the hash, the length, then the bytes in the log. Bounds by entries and bytes, evicting
from the tail. Not thread- or process-safe by itself: the caller holds the writer lock.

Layout: a 64-byte head (most recent, least recent, count, free list, entries used, table mask, total
weight), the table (a power of two of u32 buckets, at least twice the capacity), then the entries.
Entry number 0 is NIL everywhere, so a zeroed buffer is an empty table.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

_U32 = struct.Struct("<I")
_II = struct.Struct("<II")
_ENTRY = struct.Struct("<IIIIQII")  # prev (more recent), next (less recent), hash, klen, offset, length, weight
_HKO = struct.Struct("<8xIIQ")  # hash, klen, offset: what a probe of the table compares
_OLW = struct.Struct("<16xQII")  # offset, length, weight
_OLW_SET = struct.Struct("<QII").pack_into
_HEAD = struct.Struct("<IIIIIIQ")  # head, tail, count, free, top, mask, total_weight
_ENTRY_SIZE = 32
_REC_HEAD = 25  # cache/records.py: body_crc, head_crc, kind, seq, klen, vlen
_crc32 = zlib.crc32


class ShmIndex:
    """An LRU index in a shared buffer: hash table + recency list, bounded by entries and bytes."""

    def __init__(self, buf: Any, capacity: int, max_bytes: int | None, log: Any) -> None:
        """Use *buf* (laid out by `size_for`); the records' key bytes are read in *log*."""
        self.buf, self.capacity, self.max_bytes, self.log = buf, capacity, max_bytes, log
        nb = 1
        while nb < 2 * (capacity + 1):
            nb <<= 1
        self.mask = nb - 1
        self.tbl = 64
        self.ent = 64 + 4 * nb  # entry e (1-based) at ent + e * 32; 0 is NIL everywhere

    @staticmethod
    def size_for(capacity: int) -> int:
        """Bytes of buffer an index of *capacity* entries needs."""
        nb = 1
        while nb < 2 * (capacity + 1):
            nb <<= 1
        return 64 + 4 * nb + _ENTRY_SIZE * (capacity + 2)

    def init(self) -> None:
        """Write an empty index (the buffer is zeros)."""
        _HEAD.pack_into(self.buf, 0, 0, 0, 0, 0, 0, self.mask, 0)

    def _find(self, k: bytes, h: int) -> tuple[int, int]:
        """Return (bucket, entry) of key *k* (hash *h*), or (empty bucket, 0)."""
        buf, mask, tbl, ent = self.buf, self.mask, self.tbl, self.ent
        i = h & mask
        klen = len(k)
        while True:
            e = _U32.unpack_from(buf, tbl + 4 * i)[0]
            if not e:
                return i, 0
            eh, ek, off = _HKO.unpack_from(buf, ent + e * _ENTRY_SIZE)
            if eh == h and ek == klen and self.log[off + _REC_HEAD : off + _REC_HEAD + klen] == k:
                return i, e
            i = (i + 1) & mask

    def _to_front(self, e: int, head: int, tail: int) -> None:
        buf, ent = self.buf, self.ent
        at = ent + e * _ENTRY_SIZE
        p, n = _II.unpack_from(buf, at)
        if not p:
            return  # already the most recent
        _U32.pack_into(buf, ent + p * _ENTRY_SIZE + 4, n)
        if n:
            _U32.pack_into(buf, ent + n * _ENTRY_SIZE, p)
        else:
            tail = p
        _II.pack_into(buf, at, 0, head)
        _U32.pack_into(buf, ent + head * _ENTRY_SIZE, e)
        _II.pack_into(buf, 0, e, tail)

    def get(self, k: bytes) -> tuple[int, int] | None:
        """Return (offset, length) of *k*'s record and make it the most recent, or None."""
        # One function, one unpack of the entry: each Python call here costs ~0.1 us of ~2.
        buf, mask, tbl, ent, log = self.buf, self.mask, self.tbl, self.ent, self.log
        h = _crc32(k)
        klen = len(k)
        i = h & mask
        while True:
            e = _U32.unpack_from(buf, tbl + 4 * i)[0]
            if not e:
                return None
            at = ent + e * _ENTRY_SIZE
            p, n, eh, ek, off, length, _w = _ENTRY.unpack_from(buf, at)
            if eh == h and ek == klen and log[off + _REC_HEAD : off + _REC_HEAD + klen] == k:
                break
            i = (i + 1) & mask
        if p:  # not already the most recent: unlink, then link at the head
            head, tail = _II.unpack_from(buf, 0)
            _U32.pack_into(buf, ent + p * _ENTRY_SIZE + 4, n)
            if n:
                _U32.pack_into(buf, ent + n * _ENTRY_SIZE, p)
            else:
                tail = p
            _II.pack_into(buf, at, 0, head)
            _U32.pack_into(buf, ent + head * _ENTRY_SIZE, e)
            _II.pack_into(buf, 0, e, tail)
        return off, length

    def put(self, k: bytes, off: int, length: int, weight: int) -> int:
        """Insert or replace *k* as the most recent; evict from the tail to the bounds; return evictions."""
        buf, ent = self.buf, self.ent
        h = _crc32(k)
        i, e = self._find(k, h)
        head, tail, count, free, top, mask, total = _HEAD.unpack_from(buf, 0)
        if e:
            at = ent + e * _ENTRY_SIZE
            total += weight - _OLW.unpack_from(buf, at)[2]
            _OLW_SET(buf, at + 16, off, length, weight)
            if e != head:
                self._to_front(e, head, tail)
            head, tail = _II.unpack_from(buf, 0)
        else:
            if free:
                e = free
                free = _U32.unpack_from(buf, ent + e * _ENTRY_SIZE + 4)[0]
            else:
                top += 1
                e = top
            _ENTRY.pack_into(buf, ent + e * _ENTRY_SIZE, 0, head, h, len(k), off, length, weight)
            _U32.pack_into(buf, self.tbl + 4 * i, e)
            if head:
                _U32.pack_into(buf, ent + head * _ENTRY_SIZE, e)
            else:
                tail = e
            head = e
            count += 1
            total += weight
        gone = 0
        max_bytes = self.max_bytes
        while count > self.capacity or (max_bytes is not None and total > max_bytes):
            victim = tail
            if victim == e:
                break  # the newest entry is never its own victim
            vp, _vn, vh, vk, _o, _l, vw = _ENTRY.unpack_from(buf, ent + victim * _ENTRY_SIZE)
            tail = vp
            _U32.pack_into(buf, ent + vp * _ENTRY_SIZE + 4, 0)
            self._unhash(victim, vh)
            _U32.pack_into(buf, ent + victim * _ENTRY_SIZE + 4, free)
            free = victim
            count -= 1
            total -= vw
            gone += 1
        _HEAD.pack_into(buf, 0, head, tail, count, free, top, mask, total)
        return gone

    def _unhash(self, e: int, h: int) -> None:
        """Remove entry *e* (hash *h*) from the table by backward shift: no tombstones."""
        buf, mask, tbl, ent = self.buf, self.mask, self.tbl, self.ent
        i = h & mask
        while _U32.unpack_from(buf, tbl + 4 * i)[0] != e:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            f = _U32.unpack_from(buf, tbl + 4 * j)[0]
            if not f:
                break
            home = _U32.unpack_from(buf, ent + f * _ENTRY_SIZE + 8)[0] & mask
            if (i <= j and (home <= i or home > j)) or (i > j and home <= i and home > j):
                _U32.pack_into(buf, tbl + 4 * i, f)
                i = j
        _U32.pack_into(buf, tbl + 4 * i, 0)

    def keys_lru(self) -> list[int]:
        """Record offsets from least to most recent."""
        out, e = [], _II.unpack_from(self.buf, 0)[1]
        while e:
            p, _n, _h, _k, off, _l, _w = _ENTRY.unpack_from(self.buf, self.ent + e * _ENTRY_SIZE)
            out.append(off)
            e = p
        return out

    def check(self) -> None:
        """Assert the invariants: links both ways, count and weight, every entry found by its key."""
        buf, ent = self.buf, self.ent
        head, tail, count, _free, _top, _mask, total = _HEAD.unpack_from(buf, 0)
        seen, weight, prev, e = 0, 0, 0, head
        while e:
            p, n, h, klen, off, _l, w = _ENTRY.unpack_from(buf, ent + e * _ENTRY_SIZE)
            assert p == prev, f"entry {e}: prev {p}, expected {prev}"
            k = bytes(self.log[off + _REC_HEAD : off + _REC_HEAD + klen])
            assert h == _crc32(k) and self._find(k, h)[1] == e, f"entry {e} not found by its key {k!r}"
            seen, weight, prev, e = seen + 1, weight + w, e, n
        assert prev == tail and seen == count and weight == total, (prev, tail, seen, count, weight, total)
        assert sum(1 for i in range(self.mask + 1) if _U32.unpack_from(buf, self.tbl + 4 * i)[0]) == count
