"""Following a shared log: applying the records other processes published, in order.

The hot loop of a shared cache (cache/sharedlog.py): with N processes on one file, every record is
applied by N - 1 of them, so its cost per record is paid N - 1 times per operation. It is kept flat
and does the least that is safe:

- It reads the records in place (the shared map, or one pread past it), copying only keys.
- It checks framing and order (lengths within the published span, each sequence number one more
  than the last) but not the two CRC32s. Everything it reads lies below a published end: written
  whole by a live writer holding the lock before that writer published it, and never changed after
  (garbage of a dead writer lies past the end; compaction writes a new file). The CRCs guard
  against the disk, and the disk is checked where it is read whole: at every open and every new
  generation (cache/sharedlog.py `_load`: each record's CRCs, as a first open), and at every value
  read (cache/log.py `read_verified` checks the record's CRCs and its key, so a misread key can
  never return a value). Following the bench trace's 99k records from a second open went from 5.1
  to 3.8 us a record (median of 3; with the index's put path reordered, cache/index.py).
- A TOUCH (a hit in another process, the most common record) moves its key with no call into the
  index; a PUT outside a group is one call (the index's `put`); other records go through `apply`,
  a write of several records through `_apply_group`.

`apply_published` is cache/_cfollow.c's compiled loop where it was built (setup.py), which does
record for record what `apply_published_python` does, a PUT included (tests/cache/test_cfollow.py
checks the two against each other on a real index); else it is `apply_published_python`.

A whole file read at once (a joining open, another generation) is checked first (`check_span`, both
CRCs of every record, in place) and then applied by the same walk (`apply_checked`).

A write of several records (MORE flags) is applied only once its last record is in.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from cache import records as fmt
from cache.crc import crc32 as _crc32

_HEAD = struct.Struct("<IIBQII").unpack_from
_FIELDS = struct.Struct("<8xBQII").unpack_from  # kind, seq, klen, vlen: following skips the CRCs
_HEAD_SIZE = fmt.RECORD_HEADER_SIZE
_TOUCH, _PUT, _MORE = fmt.TOUCH, fmt.PUT, fmt.MORE
_KINDS = frozenset(fmt.KIND_NAMES)



class Index(NamedTuple):
    """What following needs of the in-memory index (PersistentLRU's; cache/index.py)."""

    keys: dict[bytes, Any]  # decoded keys by their bytes; may miss some
    key_of: Callable[[bytes, int], Any]  # decode (key bytes, file offset), raising CorruptStoreError
    move_to_end: Callable[[Any], None]  # a TOUCH; KeyError if the key is not in the order
    apply: Callable[[int, bytes, int, int, int], None]  # any record: (kind, key, offset, length, vlen)
    put: Callable[[bytes, int, int, int], None]  # a PUT outside a group: (key, offset, length, vlen)
    # For the compiled loop (cache/_cfollow.c), which applies a PUT itself as `put` does: the
    # order's entries (RecencyOrder.entries), the order (its bounds and total_weight) and the
    # owner of `_live`. None: the Python loop runs, with `put`.
    entries: dict[Any, tuple[Any, int]] | None = None
    order: Any = None
    owner: Any = None


def apply_published_python(buf: Any, pos: int, end: int, base: int, seq: int,
                           index: Index) -> tuple[int, int]:
    """Apply the whole writes in buf[pos:end] (file offset base + pos), the first numbered *seq*.

    Return the position after the last whole write and the sequence number after it: short of
    *end* only if the bytes stop making sense there. The reference of cache/_cfollow.c's loop
    (`apply_published` is that one when it is built).
    """
    # The loop every record of every other process goes through (see the module docstring): each
    # name it uses is a local, a record's key is sliced only where it is used, and a write of
    # several records (MORE flags) leaves the loop for _apply_group, so the loop keeps no "last
    # whole write" apart from its position. A TOUCH is one dict lookup and one move.
    keys, _key_of, move_to_end, apply, put = index[:5]
    fields, touch, put_kind, more, kinds = _FIELDS, _TOUCH, _PUT, _MORE, _KINDS
    last = end - _HEAD_SIZE
    while pos <= last:
        kind, rseq, klen, vlen = fields(buf, pos)
        vstart = pos + _HEAD_SIZE + klen
        nxt = vstart + vlen
        if rseq != seq or nxt > end:
            break
        if kind == touch:  # the common record: a hit in another process
            kbytes = buf[vstart - klen : vstart]
            try:
                move_to_end(keys[kbytes])
            except KeyError:  # a key not decoded yet, or one gone since
                _touch_slow(index, kbytes, base + pos)
        elif kind == put_kind:  # the next most common: a miss filled, or a set
            put(buf[vstart - klen : vstart], base + pos, nxt - pos, vlen)
        elif kind & more:
            pos_after, seq_after = _apply_group(buf, pos, end, base, seq, apply)
            if pos_after == pos:
                break  # not whole (yet), or not sense: stop before it
            pos, seq = pos_after, seq_after
            continue
        elif kind in kinds:
            apply(kind, buf[vstart - klen : vstart], base + pos, nxt - pos, vlen)
        else:
            break
        pos = nxt
        seq += 1
    return pos, seq


try:
    from cache import _cfollow
except ImportError:  # not built (no C compiler at install): the same loop in Python (see setup.py)
    _cfollow = None  # type: ignore[assignment]


def _touch_slow(index: Index, kbytes: bytes, offset: int) -> None:
    """A TOUCH whose key is not among the decoded ones (or is gone): decode it, then move it."""
    key = index.key_of(kbytes, offset)  # CorruptStoreError if undecodable
    try:
        index.move_to_end(key)
    except KeyError:
        pass  # a touch of a key gone since: nothing to move


def _apply_group(buf: Any, pos: int, end: int, base: int, seq: int,
                 apply: Callable[[int, bytes, int, int, int], None]) -> tuple[int, int]:
    """Apply the write of several records starting at *pos* once its last record is in.

    Return the position and sequence number after it, or (*pos*, *seq*) unchanged if it is not
    whole within *end* or its bytes stop making sense.
    """
    members: list[tuple[int, bytes, int, int, int]] = []
    at, next_seq = pos, seq
    last = end - _HEAD_SIZE
    while at <= last:
        kind, rseq, klen, vlen = _FIELDS(buf, at)
        kstart = at + _HEAD_SIZE
        vstart = kstart + klen
        nxt = vstart + vlen
        if rseq != next_seq or nxt > end or kind & ~_MORE not in _KINDS:
            break
        members.append((kind & ~_MORE, buf[kstart:vstart], base + at, nxt - at, vlen))
        at, next_seq = nxt, next_seq + 1
        if not kind & _MORE:
            for member in members:
                apply(*member)
            return at, next_seq
    return pos, seq


if _cfollow is not None:
    _cfollow.configure(_touch_slow, _apply_group, apply_published_python)
    apply_published = _cfollow.apply_published
else:
    apply_published = apply_published_python


def check_span(buf: Any, pos: int, end: int, seq: int) -> tuple[int, int, str | None]:
    """Check every record of buf[pos:end] (file offsets) as a first open does: both CRC32s, the
    framing, the kinds and the sequence numbers (the first *seq*), in place: nothing copied.

    Return the position after the last whole write, the sequence number after it, and what was
    wrong where the check stopped short of *end* (None when it reached it).
    """
    view = memoryview(buf)
    try:
        good_pos, good_seq = pos, seq
        last = end - _HEAD_SIZE
        while pos <= last:
            body_crc, head_crc, kind, rseq, klen, vlen = _HEAD(buf, pos)
            kstart = pos + _HEAD_SIZE
            vstart = kstart + klen
            nxt = vstart + vlen
            if _crc32(view[pos + 8 : kstart]) != head_crc:
                return good_pos, good_seq, "record header checksum mismatch"
            if nxt > end or kind & ~_MORE not in _KINDS or klen > fmt.MAX_KEY_SIZE:
                return good_pos, good_seq, "record header invalid or past the published end"
            if _crc32(view[vstart:nxt], _crc32(view[kstart:vstart], head_crc)) != body_crc:
                return good_pos, good_seq, f"record body checksum mismatch (seq {rseq})"
            if rseq != seq:
                return good_pos, good_seq, f"record out of sequence: seq {rseq}, expected {seq}"
            seq += 1
            pos = nxt
            if not kind & _MORE:
                good_pos, good_seq = pos, seq
        return good_pos, good_seq, None if good_pos == end else "a write cut short"
    finally:
        view.release()


def apply_checked(buf: Any, pos: int, end: int, seq: int, index: Index) -> tuple[int, int, str | None]:
    """apply_published for a whole file read at once (an open that joins, another generation):
    check_span first, then apply the whole writes it passed, in place from the map.

    Return what check_span returns (the walk never applies a record it did not check).
    """
    good_end, good_seq, wrong = check_span(buf, pos, end, seq)
    applied_end, applied_seq = apply_published(buf, pos, good_end, 0, seq, index)
    if (applied_end, applied_seq) != (good_end, good_seq):  # checked bytes that do not apply
        return applied_end, applied_seq, wrong or "a checked write could not be applied"
    return good_end, good_seq, wrong
