"""The record log's on-disk format: a checksummed header, then checksummed records.

Pure: bytes in, values out; no file access. `cache/log.py` does the I/O.

File header (little endian)::

    magic     8 bytes   b"\\x89FANLOG\\n"  (high bit and newline catch text-mode and 7-bit damage)
    version   u16       FORMAT_VERSION
    flags     u16       0 (reserved)
    first_seq u64       sequence number of the first record
    meta_len  u32       length of the metadata (UTF-8 JSON, e.g. the serializer's name)
    meta      meta_len bytes
    crc       u32       CRC32 of every header byte before it

Record::

    body_crc  u32       CRC32 of key + value, seeded with head_crc: covers the whole record
    head_crc  u32       CRC32 of kind..vlen: the lengths are trusted only when it matches
    kind      u8        PUT, DELETE, TOUCH, CLEAR or BOUNDS; high bit MORE: the write goes on in the
                        next record
    seq       u64       exactly one more than the record before it
    klen      u32       key length
    vlen      u32       value length
    key, value

Two checksums let replay tell a torn tail from damage in the middle: a header whose own CRC holds
gives a trustworthy length even when the body was cut off, and after a bad record the scanner can look
for a later intact record (`find_next_record`) — if one exists the damage is not a torn tail.

A write of several records (RecordLog.append_many) is all-or-nothing: every record but its last
carries the MORE flag, and replay applies the group only once its last record is intact.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from cache.crc import crc32 as _crc32

MAGIC = b"\x89FANLOG\n"
FORMAT_VERSION = 1

PUT, DELETE, TOUCH, CLEAR, BOUNDS = 1, 2, 3, 4, 5
MORE = 0x80  # flag on `kind`: this record's write continues in the next record
KIND_NAMES = {PUT: "put", DELETE: "delete", TOUCH: "touch", CLEAR: "clear", BOUNDS: "bounds"}

_FILE_HEAD = struct.Struct("<8sHHQI")  # magic, version, flags, first_seq, meta_len
_RECORD_HEAD = struct.Struct("<IIBQII")  # body_crc, head_crc, kind, seq, klen, vlen
_HEAD_FIELDS = struct.Struct("<BQII")  # the part head_crc covers
RECORD_HEADER_SIZE = _RECORD_HEAD.size  # 25
MAX_KEY_SIZE = 1 << 20
MAX_VALUE_SIZE = (1 << 32) - 1
MAX_META_SIZE = 1 << 16
_pack_fields = _HEAD_FIELDS.pack
_pack_crcs = struct.Struct("<II").pack
_unpack_head = _RECORD_HEAD.unpack_from
_NONZERO = re.compile(rb"[^\x00]")


@dataclass(frozen=True, slots=True)
class FileHeader:
    """The decoded file header: format version, first sequence number, metadata and its size."""

    version: int
    first_seq: int
    meta: dict[str, Any]
    size: int


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record; `offset`/`length` locate the whole record in the file."""

    kind: int
    seq: int
    key: bytes
    value_len: int
    offset: int
    length: int
    more: bool = False  # the write this record belongs to continues in the next record


class FormatError(Exception):
    """Raised by the pure decoders; the I/O layer turns it into CorruptStoreError with the path."""

    def __init__(self, detail: str, offset: int, foreign: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.offset = offset
        self.foreign = foreign


def encode_header(first_seq: int, meta: dict[str, Any]) -> bytes:
    """Return the file header for a log whose first record will carry *first_seq*."""
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    if len(meta_bytes) > MAX_META_SIZE:
        raise ValueError("store metadata too large")
    head = _FILE_HEAD.pack(MAGIC, FORMAT_VERSION, 0, first_seq, len(meta_bytes)) + meta_bytes
    return head + struct.pack("<I", _crc32(head))


def min_header_size() -> int:
    """Return the size of a header with empty metadata: fewer bytes than this is no header."""
    return _FILE_HEAD.size + 4


def decode_header(buf: bytes) -> FileHeader:
    """Decode the header at the start of *buf*; raise FormatError if it is absent, foreign or damaged."""
    if len(buf) < len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
        if len(buf) < len(MAGIC) and MAGIC.startswith(bytes(buf)):
            raise FormatError("file header cut short", 0)
        raise FormatError("not a fanmill record log (bad magic)", 0, foreign=True)
    if len(buf) < _FILE_HEAD.size + 4:
        raise FormatError("file header cut short", 0)
    _magic, version, _flags, first_seq, meta_len = _FILE_HEAD.unpack_from(buf, 0)
    if meta_len > MAX_META_SIZE:
        raise FormatError(f"file header claims {meta_len} bytes of metadata", 0)
    end = _FILE_HEAD.size + meta_len
    if len(buf) < end + 4:
        raise FormatError("file header cut short", 0)
    (crc,) = struct.unpack_from("<I", buf, end)
    if crc != _crc32(buf[:end]):
        raise FormatError("file header checksum mismatch", 0)
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported format version {version} (this code reads {FORMAT_VERSION})", 0)
    try:
        meta = json.loads(bytes(buf[_FILE_HEAD.size : end]).decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"file header metadata unreadable: {exc}", 0) from None
    if not isinstance(meta, dict):
        raise FormatError("file header metadata is not an object", 0)
    return FileHeader(version, first_seq, meta, end + 4)


def encode_record(kind: int, seq: int, key: bytes, value: bytes = b"") -> bytes:
    """Return one record's bytes; the caller assigns *seq* (one more than the previous record)."""
    if len(key) > MAX_KEY_SIZE or len(value) > MAX_VALUE_SIZE:
        raise ValueError(
            f"record too large: key {len(key)} bytes (limit {MAX_KEY_SIZE}), "
            f"value {len(value)} bytes (limit {MAX_VALUE_SIZE})"
        )
    fields = _pack_fields(kind, seq, len(key), len(value))
    head_crc = _crc32(fields)
    return _pack_crcs(_crc32(value, _crc32(key, head_crc)), head_crc) + fields + key + value


class NeedMore(Exception):
    """The buffer ends inside a record whose header is intact: more bytes are needed to decode it."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


def decode_record(buf: bytes | memoryview, pos: int, base: int, expected_seq: int) -> Record:
    """Decode the record at *pos* of *buf* (file offset *base* + pos).

    Raise NeedMore if the buffer ends inside the record (a torn tail when nothing follows), or
    FormatError if the record is damaged or out of sequence.
    """
    avail = len(buf) - pos
    if avail < RECORD_HEADER_SIZE:
        raise NeedMore(RECORD_HEADER_SIZE)
    body_crc, head_crc, kind, seq, klen, vlen = _RECORD_HEAD.unpack_from(buf, pos)
    if _crc32(buf[pos + 8 : pos + RECORD_HEADER_SIZE]) != head_crc:
        raise FormatError("record header checksum mismatch", base + pos)
    more = bool(kind & MORE)
    kind &= ~MORE
    if kind not in KIND_NAMES or klen > MAX_KEY_SIZE:
        raise FormatError(f"record header invalid (kind {kind}, key length {klen})", base + pos)
    total = RECORD_HEADER_SIZE + klen + vlen
    if avail < total:
        raise NeedMore(total)
    kstart = pos + RECORD_HEADER_SIZE
    key = bytes(buf[kstart : kstart + klen])
    if _crc32(buf[kstart + klen : pos + total], _crc32(key, head_crc)) != body_crc:
        raise FormatError(f"record body checksum mismatch ({KIND_NAMES[kind]} seq {seq})", base + pos)
    if seq != expected_seq:
        raise FormatError(f"record out of sequence: seq {seq}, expected {expected_seq}", base + pos)
    return Record(kind, seq, key, vlen, base + pos, total, more)


def check_record(buf: bytes, expected_key: bytes) -> memoryview:
    """Verify a whole record read back from the file and return a view of its value.

    Raise FormatError (offset relative to the record) if a checksum, the length or the key does not
    match. This is the read hot path: kept flat on purpose.
    """
    if len(buf) < RECORD_HEADER_SIZE:
        raise FormatError("record cut short", 0)
    body_crc, head_crc, _kind, _seq, klen, vlen = _unpack_head(buf)
    kend = RECORD_HEADER_SIZE + klen
    if kend + vlen != len(buf) or _crc32(buf[8:RECORD_HEADER_SIZE]) != head_crc:
        raise FormatError("record header damaged or its length differs from the index", 0)
    if buf[RECORD_HEADER_SIZE:kend] != expected_key:
        raise FormatError("record holds another key than the index says", 0)
    value = memoryview(buf)[kend:]
    if _crc32(value, _crc32(expected_key, head_crc)) != body_crc:
        raise FormatError("record body checksum mismatch", 0)
    return value


def find_next_record(
    buf: bytes | memoryview, start: int, base: int, min_seq: int, stop: int | None = None
) -> Record | None:
    """Return the first intact record starting in [*start*, *stop*) whose seq exceeds *min_seq*, or None.

    Used after damage: an intact later record proves the damage is not a torn tail. Two CRC32s
    (header and body) must match, so random bytes pass with odds of about 2**-64. Runs of zeros (a
    preallocated tail) are skipped at C speed: a record's kind byte is never zero.
    """
    end = len(buf) - RECORD_HEADER_SIZE
    if stop is not None:
        end = min(end, stop - 1)
    pos = start
    while pos <= end:
        if not buf[pos + 8]:
            found = _NONZERO.search(buf, pos + 9)
            if found is None:
                return None
            pos = found.start() - 8
            continue
        _b, head_crc, kind, seq, klen, vlen = _RECORD_HEAD.unpack_from(buf, pos)
        if (
            kind & ~MORE in KIND_NAMES
            and seq > min_seq
            and klen <= MAX_KEY_SIZE
            and _crc32(buf[pos + 8 : pos + RECORD_HEADER_SIZE]) == head_crc
        ):
            try:
                return decode_record(buf, pos, base, seq)
            except (NeedMore, FormatError):
                pass
        pos += 1
    return None
