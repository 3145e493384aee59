"""Replaying a record log at open: every record checked, a torn tail told apart from damage.

Opening replays every record and checks both checksums of each. A record cut off at the end of the
file (a write interrupted by a crash) is a torn tail: it is cut off, counted, never applied. Damage
followed by intact records is not a torn tail: it raises CorruptStoreError naming the file, offset and
fault, unless the caller asked to salvage, in which case the damaged span is skipped, the number of
records lost (from the gap in sequence numbers) is counted and logged as a warning, and the owner is
expected to compact so the damage is gone from disk.

A writer's file ends in zeros up to a GROW boundary after a crash (cache/growth.py): replay reads that
zero tail as the clean end of the log, and counts as torn only the bytes of a record cut off before
it (its checksums fail; an all-zero span is never an intact record, since a record's header checksum
of zeros is not zero).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from cache import records as fmt
from cache.errors import CorruptStoreError
from cache.growth import GROW, data_end

log = logging.getLogger("cache.log")
_CHUNK = 4 << 20


@dataclass(slots=True)
class ReplayReport:
    """What opening a log found: records replayed, a torn tail cut off, damage salvaged."""

    records: int = 0
    torn_tail_bytes: int = 0
    salvaged_records_lost: int = 0
    salvaged_bytes_skipped: int = 0


def replay_records(
    fd: int,
    path: str,
    start: int,
    size: int,
    first_seq: int,
    on_record: Callable[[fmt.Record], None],
    salvage: bool,
    report: ReplayReport,
) -> tuple[int, int]:
    """Feed every intact write of the file *fd* from *start* to *on_record*, in order, checked.

    Nothing at or past *size* is read: a shared log's opener passes its published end.

    Return (end of the last whole write, next sequence number); count in *report* what was
    replayed, salvaged, and the torn tail after that end (which the caller cuts off).
    """
    # A file of whole GROW steps may be a writer's, preallocated and cut off by a crash: its zero
    # tail is the clean end of the log, not torn bytes. Other files end where their bytes end.
    zero_tail = data_end(fd, start, size) if size % GROW == 0 else size
    buf = b""
    base = start  # file offset of buf[0]
    pos = 0
    expected = first_seq
    good_end = start  # end of the last complete write: everything after it is a torn tail
    group: list[fmt.Record] = []
    while True:
        view = memoryview(buf)
        try:
            rec = fmt.decode_record(view, pos, base, expected)
        except fmt.NeedMore as need:
            file_pos = base + len(buf)
            more = os.pread(fd, min(max(_CHUNK, need.needed), size - file_pos), file_pos) if file_pos < size else b""
            if not more:
                break  # a write cut off by the end of the file: a torn tail
            buf = bytes(view[pos:]) + more
            base += pos
            pos = 0
            continue
        except fmt.FormatError as err:
            if base + pos >= zero_tail:
                break  # nothing but zeros from here: the end of a preallocated log
            rest = bytes(view[pos:]) + os.pread(fd, max(0, size - base - len(buf)), base + len(buf))
            nxt = fmt.find_next_record(rest, 1, base + pos, expected - 1, stop=zero_tail - base - pos)
            if nxt is None:  # nothing intact after it: a torn tail
                break
            if not salvage:
                raise CorruptStoreError(
                    path,
                    f"{err.detail}; intact records follow, so this is not a torn tail "
                    f"(open with salvage=True to keep the intact records)",
                    err.offset,
                ) from None
            # The damaged write's records already read are dropped with it.
            lost = nxt.seq - expected + len(group)
            skipped = nxt.offset - good_end
            report.salvaged_records_lost += lost
            report.salvaged_bytes_skipped += skipped
            group.clear()
            log.warning(
                "%s: damage at offset %d (%s): skipped %d bytes, lost %d records",
                path, err.offset, err.detail, skipped, lost,
            )
            buf, base, pos, expected = rest, base + pos, nxt.offset - (base + pos), nxt.seq
            continue
        pos += rec.length
        expected += 1
        if rec.more:  # part of a multi-record write: applied once the write's last record is in
            group.append(rec)
            continue
        for member in group:
            on_record(member)
        on_record(rec)
        report.records += len(group) + 1
        group.clear()
        good_end = rec.offset + rec.length
    # Torn: the bytes of writes cut off (a record's last bytes may be zeros: clamp).
    report.torn_tail_bytes = max(0, zero_tail - good_end)
    if report.torn_tail_bytes:
        log.info("%s: cut off a torn tail of %d bytes", path, report.torn_tail_bytes)
    return good_end, expected
