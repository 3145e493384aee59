"""How records become PersistentLRU's in-memory index: replay at open, and following other processes.

Eviction writes nothing (cache/persistent.py): applying a PUT evicts, in memory, exactly what the
process that wrote it evicted, from the recorded bounds and the order. So every process that applies
the same records in the same order holds the same index; cache/sharedlog.py feeds each process the
records the others appended, through cache/follow.py, which moves touched keys itself and calls `_apply` for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from cache import records as fmt
from cache.encoding import decode_key
from cache.errors import CorruptStoreError
from cache.log import FAST_TOUCH_BATCH
from cache.order import RecencyOrder
from cache.stats import LRUStats

MISSING = object()  # a sentinel: no value, no key


def encode_bounds(capacity: int | None, max_bytes: int | None) -> bytes:
    """Return the key of a BOUNDS record."""
    return json.dumps([capacity, max_bytes]).encode()


def decode_bounds(data: bytes, path: str, offset: int) -> tuple[int | None, int | None]:
    """Return (capacity, max_bytes) from a BOUNDS record's key; CorruptStoreError if unreadable."""
    try:
        capacity, max_bytes = json.loads(data)
        RecencyOrder(capacity, max_bytes)  # validates
    except (ValueError, TypeError) as exc:
        raise CorruptStoreError(path, f"unreadable bounds record: {exc}", offset) from None
    return capacity, max_bytes


class IndexReplay:
    """The index half of PersistentLRU: replay, touches, bounds, compaction (a mixin: the attributes are PersistentLRU's)."""

    _order: RecencyOrder
    _keys: dict[bytes, Any]
    _meta: dict[str, Any]
    _opened: bool
    _live: int
    _newest: Any
    _pending_touches: list[bytes]
    _is_shared: bool
    _log: Any
    _log_read: Any
    _hits: int
    _misses: int
    _evictions: int
    _compactions: int
    _on_evict: Callable[[Any], None] | None
    _locked: Callable[[], AbstractContextManager[None]]
    _check_open: Callable[[], None]
    path: str

    def _header_size(self) -> int:
        return len(fmt.encode_header(0, self._meta))

    def _reset(self) -> None:
        """Forget the index: the shared log is about to replay a new generation of the file."""
        self._order.clear()
        self._order.set_bounds(None, None)  # the new file's BOUNDS record comes first
        self._live = self._header_size() if self._opened else 0
        self._newest = MISSING

    def _replay_record(self, rec: fmt.Record) -> None:
        self._apply(rec.kind, rec.key, rec.offset, rec.length, rec.value_len)

    def _key_of(self, kbytes: bytes, offset: int) -> Any:
        """Decode *kbytes*, through a cache: replaying other processes' records decodes the same keys."""
        keys = self._keys
        key = keys.get(kbytes)
        if key is None:
            try:
                key = decode_key(kbytes)
            except ValueError as exc:
                raise CorruptStoreError(self.path, f"undecodable key: {exc}", offset) from None
            self._remember_key(kbytes, key)
        return key

    def _remember_key(self, kbytes: bytes, key: Any) -> None:
        """Remember *key* by its bytes: one _key_of decoded, or one this open put (_apply_put
        remembers the keys of followed puts itself, inline, with the same bound).

        Other processes' touches of it then find it (cache/follow.py) instead of raising and
        decoding it: each such touch cost a KeyError, a call and a decode. Counted on the bench
        trace (100k operations): 5.2% of the records followed at 2 processes took that path, 1.0%
        at 8; none since.
        """
        keys = self._keys
        if len(keys) > 2 * self._order.size() + 4096:
            keys.clear()  # a pure function's cache: forgetting it costs only decodes
        keys[kbytes] = key

    def _apply(self, kind: int, kbytes: bytes, offset: int, length: int, value_len: int) -> None:
        """Apply one record of the log to the index, as the process that wrote it did."""
        order = self._order
        if kind == fmt.PUT:
            self._apply_put(kbytes, offset, length, value_len)
            return
        if kind == fmt.TOUCH:
            try:
                order.touch(self._key_of(kbytes, offset))
            except KeyError:
                pass  # a touch of a key gone since (deleted, or lost to salvage): nothing to move
            return
        if kind == fmt.CLEAR:
            order.clear()
            self._live = 0
            return
        if kind == fmt.BOUNDS:
            order.set_bounds(*decode_bounds(kbytes, self.path, offset))
            self._order_victims_apply()
            return
        key = self._key_of(kbytes, offset)  # DELETE
        if key in order:
            self._live -= order.remove(key)[1]

    def _apply_put(self, kbytes: bytes, offset: int, length: int, value_len: int) -> None:
        """Apply a PUT record (the record following other processes applies most after touches)."""
        keys = self._keys
        key = keys.get(kbytes)
        if key is None:  # _key_of's miss path, inline: a followed put of a new key decodes it
            try:
                key = decode_key(kbytes)
            except ValueError as exc:
                raise CorruptStoreError(self.path, f"undecodable key: {exc}", offset) from None
            if len(keys) > 2 * self._order.size() + 4096:
                keys.clear()  # as _remember_key: a pure function's cache
            keys[kbytes] = key
        old, gone = self._order.load_evicting(key, (offset, length, kbytes), len(kbytes) + value_len)
        live = self._live + length
        if old is not None:
            live -= old[1]
        for payload in gone:  # the evictions this put made, as the process that wrote it made them
            live -= payload[1]
        self._live = live

    def _order_victims_apply(self) -> list[Any]:
        """Remove the keys beyond the bounds (least recent first) in memory; return them."""
        victims = self._order.over_bounds()
        for victim in victims:
            self._live -= self._order.remove(victim)[1]
        return victims

    def _decode_key(self, rec: fmt.Record) -> Any:
        try:
            return decode_key(rec.key)
        except ValueError as exc:
            raise CorruptStoreError(self.path, f"undecodable key: {exc}", rec.offset) from None

    def _queue_touch(self, kbytes: bytes) -> None:
        self._pending_touches.append(kbytes)
        if len(self._pending_touches) >= FAST_TOUCH_BATCH:
            self._flush_touches()

    def _flush_touches(self) -> None:
        pending = self._pending_touches
        if pending:
            self._log.append_touches(pending)
            if self._is_shared:  # the moves a shared "fast" open defers until written
                for kbytes in pending:
                    try:
                        self._order.touch(decode_key(kbytes))
                    except KeyError:
                        pass  # deleted or evicted since (by this process or another)
                self._newest = MISSING
            pending.clear()

    # -- bounds ----------------------------------------------------------------------------

    def _open_bounds(self, capacity: int | None, max_bytes: int | None, readonly: bool) -> None:
        wanted = (capacity, max_bytes)
        if wanted == (None, None):
            wanted = self._order.capacity, self._order.max_bytes  # keep the file's bounds
            if wanted == (None, None) and not readonly:
                raise ValueError("give capacity (entries) and/or max_bytes, or the cache never evicts")
        if readonly:
            self._order.set_bounds(*wanted)
            self._order_victims_apply()
        else:
            if wanted != (self._order.capacity, self._order.max_bytes):
                self._set_bounds(*wanted)
            if self._log.report.salvaged_records_lost or self._log.report.salvaged_bytes_skipped:
                self._compact_held()  # rewrite without the damage, so the next open is clean
            else:
                self._maybe_compact()

    def _set_bounds(self, capacity: int | None, max_bytes: int | None) -> list[Any]:
        """Record new bounds in the log, then evict in memory exactly as replay will."""
        self._order.set_bounds(capacity, max_bytes)  # validates before anything is written
        self._flush_touches()
        self._log.append(fmt.BOUNDS, encode_bounds(capacity, max_bytes))
        victims = self._order_victims_apply()
        self._evictions += len(victims)
        self._newest = MISSING
        return victims

    def resize(self, capacity: int | None = None, max_bytes: int | None = None) -> list[Any]:
        """Change the bounds, evict what no longer fits (least recent first) and return those keys."""
        if capacity is None and max_bytes is None:
            raise ValueError("give capacity (entries) and/or max_bytes")
        with self._locked():
            self._check_open()
            victims = self._set_bounds(capacity, max_bytes)
        self._notify(victims)
        return victims

    def _notify(self, victims: list[Any]) -> None:
        if self._on_evict is not None:
            for victim in victims:
                self._on_evict(victim)

    # -- compaction and statistics ---------------------------------------------------------

    def compact(self) -> None:
        """Rewrite the file with just the live entries, in recency order, and swap it in atomically."""
        with self._locked():
            self._check_open()
            self._compact_held()

    def _compact_held(self) -> None:
        """compact(), for a caller that holds the locks (and has caught up)."""
        self._flush_touches()
        order = self._order
        # The live records are copied as they lie in the file, behind new headers (cache/compact.py),
        # instead of read out verified and encoded again: the bench trace's compaction (20,000
        # records, 42 MiB live of 127 MiB), alone, 235 -> 182 ms (medians of 3 alternated runs);
        # inside the bench run 228 -> 191 ms (4 alternated runs).
        payloads = order.payload_list()
        offsets = self._log.copy_live(encode_bounds(order.capacity, order.max_bytes), payloads)
        # The records moved, only their offsets change: each key gets a new payload in its place
        # (rebuilding the order instead cost 29-47 ms of the bench trace's compaction of 20,000 keys).
        # Payloads are tuples, not lists changed in place: a tuple of ints and bytes leaves the
        # garbage collector's tracking, so the index's 20,000 entries are not walked by every full
        # collection (the GC was 6% of the CPU of 8 processes, perf).
        order.replace_payload_list(
            [(offset, length, kbytes) for (_old, length, kbytes), offset in zip(payloads, offsets, strict=True)]
        )
        self._live = self._log.end
        self._compactions += 1

    def stats(self) -> LRUStats:
        """Return hits, misses, evictions, entries, bytes and the state of the file."""
        with self._locked():
            report = self._log.report
            return LRUStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                entries=len(self._order),
                bytes=self._order.total_weight,
                capacity=self._order.capacity,
                max_bytes=self._order.max_bytes,
                file_bytes=self._log.end,
                live_file_bytes=self._live,
                compactions=self._compactions,
                torn_tail_bytes=report.torn_tail_bytes,
                salvaged_records_lost=report.salvaged_records_lost,
            )

    def _maybe_compact(self) -> None:
        dead = self._log.end - self._live
        if dead > self._compact_min and dead > 2 * self._live:
            self._compact_held()
