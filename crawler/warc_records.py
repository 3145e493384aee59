"""WARC/1.1 records encoded here, each its own gzip member: a record is a text head and a block
(ISO 28500:2017 section 4), so building it takes a string join, a SHA-1 and one deflate call.

Why not FastWARC's writer, which this replaced: on the nginx throughput site (about 1 KB pages)
it cost ~150 µs of CPU per exchange; most of it its GzipWriter (zlib at a fixed cost per member)
and per-record header objects. Here deflate is ISA-L's (python-isal) when installed, zlib's
otherwise; bench/crawler/warc_costs.py has the figures. Readers (warcio, FastWARC) stay in the
tests and the bench, which check every digest of what is written here."""

from __future__ import annotations

import functools
import os
import struct
import threading
from hashlib import sha1 as _sha1

try:
    # ISA-L's deflate, measured against zlib level 6 here: ~1 KB records 14 µs vs 45 for 0.62 vs
    # 0.61 of the bytes; python3-doc pages (~86 KB) 198 µs vs 1,574 for 0.168 vs 0.140
    from isal import isal_zlib as _deflate

    DEFLATE = "isal"
except ImportError:  # pragma: no cover - exercised when python-isal is absent
    import zlib as _deflate

    DEFLATE = "zlib"

_GZIP_WBITS = 31  # 16 + 15: gzip framing (RFC 1952) around a deflate stream with a 32 KB window
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> two base32 digits


def deflate_level(level: int) -> int:
    """The level to give the deflate in use for a zlib-scale *level* (0-9): ISA-L has 0-3."""
    if not 0 <= level <= 9:
        raise ValueError(f"gzip level {level} is not in 0-9")
    return level if DEFLATE == "zlib" else (level + 2) // 3


def sha1_base32(digest: bytes) -> str:
    """Base32 (RFC 4648) of a 20-byte SHA-1 digest: 32 digits, no padding needed."""
    # 160 bits are exactly sixteen 10-bit pairs, taken from two 80-bit halves (smaller ints
    # shift faster); base64.b32encode is pure Python in 3.11, ~3 µs a digest here, and an
    # exchange carries three
    a = int.from_bytes(digest[:10], "big")
    b = int.from_bytes(digest[10:], "big")
    p = _B32_PAIRS
    return "".join((
        p[a >> 70], p[a >> 60 & 1023], p[a >> 50 & 1023], p[a >> 40 & 1023],
        p[a >> 30 & 1023], p[a >> 20 & 1023], p[a >> 10 & 1023], p[a & 1023],
        p[b >> 70], p[b >> 60 & 1023], p[b >> 50 & 1023], p[b >> 40 & 1023],
        p[b >> 30 & 1023], p[b >> 20 & 1023], p[b >> 10 & 1023], p[b & 1023]))


def sha1_label(digest: bytes) -> str:
    """"sha1:" + base32, the labelled digest WARC readers verify (section 5.8)."""
    return "sha1:" + sha1_base32(digest)


_ID_RUN = 256  # ids drawn at a time: os.urandom is a syscall (uuid.uuid4 makes one per id)


@functools.cache
def _uuid4_masks() -> tuple[int, int]:
    """(keep, set) masks that make _ID_RUN random 16-byte strings, joined, version 4 UUIDs:
    the version nibble 0100 and the variant bits 10 (RFC 4122 section 4.4)."""
    keep = int.from_bytes(b"\xff" * 6 + b"\x0f\xff\x3f" + b"\xff" * 7, "big")
    version = int.from_bytes(b"\x00" * 6 + b"\x40\x00\x80" + b"\x00" * 7, "big")
    return (int.from_bytes(keep.to_bytes(16, "big") * _ID_RUN, "big"),
            int.from_bytes(version.to_bytes(16, "big") * _ID_RUN, "big"))


_ID_TEMPLATE = b"<urn:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx>\n"
_ID_DIGITS = [at for at, c in enumerate(_ID_TEMPLATE) if c == ord("x")]  # 32 hex digits


def _draw_ids() -> list[str]:
    """_ID_RUN new ids, formatted all at once: digit k of every id is copied in one strided
    slice (32 of them, not 5 slices and a format per id: ~0.4 µs an id instead of ~0.8)."""
    keep, version = _uuid4_masks()
    raw = int.from_bytes(os.urandom(16 * _ID_RUN), "big") & keep | version
    digits = raw.to_bytes(16 * _ID_RUN, "big").hex().encode("ascii")
    out = bytearray(_ID_TEMPLATE * _ID_RUN)
    step = len(_ID_TEMPLATE)
    for k, at in enumerate(_ID_DIGITS):
        out[at::step] = digits[k::32]
    return out.decode("ascii").split("\n")[:-1]


_ids: list[str] = []
_ids_lock = threading.Lock()  # two writers in two threads never get the same id


def _forget_ids_in_child() -> None:
    """After fork: never reuse the parent's ids, nor a lock another thread held at the fork."""
    global _ids_lock
    _ids.clear()
    _ids_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_ids_in_child)


def new_record_ids(count: int) -> list[str]:
    """*count* WARC-Record-IDs: <urn:uuid:...>, random (version 4) UUIDs (WARC 1.1 section
    5.2)."""
    with _ids_lock:
        while len(_ids) < count:
            _ids.extend(_draw_ids())
        taken = _ids[len(_ids) - count:]
        del _ids[len(_ids) - count:]
    return taken


def new_record_id() -> str:
    """A WARC-Record-ID: <urn:uuid:...>, a random (version 4) UUID (WARC 1.1 section 5.2)."""
    return new_record_ids(1)[0]


def sha1_base32_many(digests: list[bytes]) -> list[str]:
    """sha1_base32 of each 20-byte digest, all at once: ~3x cheaper per digest for a flush's
    hundreds (a big integer's bit operations instead of sixteen Python steps per digest)."""
    # Base32 writes each 5 bits as one digit. A run of digests, each padded to 32 bytes and
    # joined, makes one integer with a digest's 32 five-bit fields in the low 160 bits of each
    # 256-bit slot; five steps spread them to one per byte: at step k every field whose index in
    # its slot has bit k set moves up by 3 * 2**k bits, so field i ends at bit 8i of its slot
    # (no field leaves its slot); one translate then maps the bytes 0-31 to the alphabet. The
    # padding spares 8 of the 13 steps the digests joined unpadded took: 4,560 -> 3,390
    # instructions a digest (callgrind). Runs of _SPREAD_RUN digests share one set of masks
    # (fewer digests need no other). NumPy is about as fast, but costs ~60 ms to import on a
    # crawl of small pages, which never loads it otherwise.
    out: list[str] = []
    masks = _spread_masks()
    for at in range(0, len(digests), _SPREAD_RUN):
        run = digests[at:at + _SPREAD_RUN]
        spread = int.from_bytes(_SLOT_PAD.join([b"", *run]), "big")
        for mask, shift in masks:
            moving = spread & mask
            spread = (spread ^ moving) | (moving << shift)
        text = spread.to_bytes(32 * len(run), "big").translate(_B32_BYTES).decode("ascii")
        out += [text[i:i + 32] for i in range(0, len(text), 32)]
    return out


_B32_BYTES = bytes.maketrans(bytes(range(32)), _B32.encode())
_SLOT_PAD = bytes(12)  # 20-byte digest + 12 = one 256-bit slot
_SPREAD_RUN = 256  # digests per integer: its masks take ~40 KB


@functools.cache
def _spread_masks() -> list[tuple[int, int]]:
    """(mask, shift) of each step of sha1_base32_many, for a run of _SPREAD_RUN digests."""
    steps = []
    for k in reversed(range(5)):
        # before step k, fields sit in runs of 2**(k+1) every 16 * 2**k bits; the upper half
        # of each run (bits 5 * 2**k to 10 * 2**k of the period) has bit k of its index set
        period = 16 << k
        pattern = ((1 << (10 << k)) - (1 << (5 << k))).to_bytes(period // 8, "little")
        mask = int.from_bytes(pattern * (256 * _SPREAD_RUN // period), "little")
        steps.append((mask, 3 << k))
    return steps


_STORED_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, no name or time, OS unknown
_STORED_BLOCK = 0xFFFF  # the most bytes one stored deflate block holds (RFC 1951 3.2.4)


def stored_member(data: bytes) -> bytes:
    """A gzip member (RFC 1952) of *data* in stored deflate blocks: framing and a CRC, no
    compression."""
    size = len(data)
    if size <= _STORED_BLOCK:  # a request record: one block, the common case by far
        return b"".join((_STORED_HEAD, _pack_block(1, size, size ^ 0xFFFF), data,
                         _pack_trailer(_deflate.crc32(data), size)))
    parts = [_STORED_HEAD]
    for at in range(0, size, _STORED_BLOCK):
        n = min(size - at, _STORED_BLOCK)
        # BFINAL (last block only) and BTYPE 00 in the first byte, the rest of its bits pad
        # to the byte; then LEN and its one's complement NLEN (RFC 1951 3.2.4)
        parts += (_pack_block(at + n == size, n, n ^ 0xFFFF), data[at:at + n])
    parts.append(_pack_trailer(_deflate.crc32(data), size & 0xFFFFFFFF))
    return b"".join(parts)


_pack_block = struct.Struct("<BHH").pack
_pack_trailer = struct.Struct("<II").pack  # CRC-32, then the size modulo 2**32


class GzipRecords:
    """Encodes records as gzip members, one member per record (WARC 1.1 annex D).

    Request records are stored, not deflated: a GET's record is ~0.5 KB that deflates to ~0.92
    of its size (a random record id, digests, a date), and deflating it took ~8% of the
    encoder's instructions per exchange on 1 KB pages (callgrind: 141,800 -> 130,600). Stored, a
    crawl's files grow ~70 bytes an exchange: ~5% on the bench's 1 KB pages, ~0.4% on
    python3-doc's pages."""

    # Records whose block is smaller are deflated at the fastest level that still compresses
    # (ISA-L 0: static Huffman tables; zlib 1). Below a few KB, building a member's dynamic
    # Huffman tables costs more than the deflate itself: on ~1 KB records ISA-L 1 takes ~14 µs
    # for 0.62 of the bytes, ISA-L 0 ~4 µs for 0.81; on ~86 KB pages 162 µs for 0.170 against
    # 152 µs for 0.183 (bench/crawler/warc_costs.py).
    small_block = 4096

    def __init__(self, level: int = 6) -> None:
        """Encode at gzip *level*, zlib's scale 0-9."""
        self._level = deflate_level(level)
        self._small_level = min(self._level, 1 if DEFLATE == "zlib" else 0)

    def members(self, records: list[tuple[str, str, str, str, bytes, bytes | None]]) -> list[bytes]:
        """The gzip member of each record (kind, record id, date, fields, block, payload SHA-1
        or None), in order. A head holds WARC-Type, -Record-ID, -Date, then *fields* (lines
        "Name: value\\r\\n", checked by the caller), WARC-Block-Digest, WARC-Payload-Digest if
        a payload SHA-1 is given, and Content-Length. Request records are stored (see the class)."""
        digests = [_sha1(r[4]).digest() for r in records]
        digests += [r[5] for r in records if r[5]]
        labels = sha1_base32_many(digests) if digests else []
        payload_labels = iter(labels[len(records):])  # the block digests come first, in order
        out = []
        compress, small = _deflate.compress, self.small_block
        level, fast = self._level, self._small_level
        for (kind, record_id, date, fields, block, payload_sha1), block_label in zip(
                records, labels, strict=False):  # stops at the records: payload labels follow
            payload = (f"WARC-Payload-Digest: sha1:{next(payload_labels)}\r\n" if payload_sha1
                       else "")
            head = (f"WARC/1.1\r\nWARC-Type: {kind}\r\nWARC-Record-ID: {record_id}\r\n"
                    f"WARC-Date: {date}\r\n{fields}WARC-Block-Digest: sha1:{block_label}\r\n"
                    f"{payload}Content-Length: {len(block)}\r\n\r\n")
            record = b"".join((head.encode(), block, b"\r\n\r\n"))
            if kind == "request":
                out.append(stored_member(record))
            else:  # one call: deflate's fixed cost per call is a large share of a 1 KB record's
                out.append(compress(record, level if len(block) >= small else fast, _GZIP_WBITS))
        return out
