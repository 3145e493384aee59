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
_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant


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


def _format_uuid4(h: str) -> str:
    """<urn:uuid:...> from 32 random hex digits, version and variant bits set (RFC 4122 4.4)."""
    return f"<urn:uuid:{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}>"


_ids: list[str] = []  # drawn 256 at a time: os.urandom is a syscall, and uuid.uuid4 one per id
os.register_at_fork(after_in_child=_ids.clear)  # a forked child must not reuse the parent's


def new_record_id() -> str:
    """A WARC-Record-ID: <urn:uuid:...>, a random (version 4) UUID (WARC 1.1 section 5.2)."""
    try:
        return _ids.pop()  # atomic under the GIL: two threads never get the same id
    except IndexError:
        h = os.urandom(16 * 256).hex()
        _ids.extend([_format_uuid4(h[i:i + 32]) for i in range(0, len(h), 32)])
        return _ids.pop()


def sha1_base32_many(digests: list[bytes]) -> list[str]:
    """sha1_base32 of each 20-byte digest, all at once: ~3x cheaper per digest for a flush's
    hundreds (a big integer's bit operations instead of sixteen Python steps per digest)."""
    # Base32 writes each 5 bits as one digit. A run of digests, joined, makes one integer whose
    # 5-bit fields are spread to one per byte in log2(fields) steps: at step k every field whose
    # index (counted from the low end) has bit k set moves up by 3 * 2**k bits, so field i ends
    # at bit 8i; then one translate maps the bytes 0-31 to the alphabet. Runs of _SPREAD_RUN
    # digests share one set of masks (fewer digests need no other: their higher steps move
    # nothing). NumPy is about as fast, but costs ~60 ms to import on a crawl of small pages,
    # which never loads it otherwise.
    out: list[str] = []
    masks = _spread_masks()
    for at in range(0, len(digests), _SPREAD_RUN):
        run = digests[at:at + _SPREAD_RUN]
        fields = 32 * len(run)
        spread = int.from_bytes(b"".join(run), "big")
        for mask, shift in masks:
            moving = spread & mask
            spread = (spread ^ moving) | (moving << shift)
        text = spread.to_bytes(fields, "big").translate(_B32_BYTES).decode("ascii")
        out += [text[i:i + 32] for i in range(0, fields, 32)]
    return out


_B32_BYTES = bytes.maketrans(bytes(range(32)), _B32.encode())
_SPREAD_RUN = 256  # digests per integer: its masks take ~100 KB


@functools.cache
def _spread_masks() -> list[tuple[int, int]]:
    """(mask, shift) of each step of sha1_base32_many, for a run of _SPREAD_RUN digests."""
    fields = 32 * _SPREAD_RUN
    steps = []
    for k in reversed(range((fields - 1).bit_length())):
        # before step k, fields sit in runs of 2**(k+1) every 16 * 2**k bits; the upper half
        # of each run (bits 5 * 2**k to 10 * 2**k of the period) has bit k of its index set
        period = 16 << k
        pattern = ((1 << (10 << k)) - (1 << (5 << k))).to_bytes(period // 8, "little")
        mask = int.from_bytes(pattern * -(-8 * fields // period), "little")
        steps.append((mask, 3 << k))
    return steps


class GzipRecords:
    """Encodes records as gzip members, one member per record (WARC 1.1 annex D)."""

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
        a payload SHA-1 is given, and Content-Length."""
        digests = [_sha1(r[4]).digest() for r in records]
        digests += [r[5] for r in records if r[5]]
        labels = iter(sha1_base32_many(digests) if digests else [])
        blocks = [next(labels) for _ in records]  # the block digests come first, in order
        out = []
        compress, small = _deflate.compress, self.small_block
        level, fast = self._level, self._small_level
        for (kind, record_id, date, fields, block, payload_sha1), block_label in zip(
                records, blocks, strict=True):
            payload = f"WARC-Payload-Digest: sha1:{next(labels)}\r\n" if payload_sha1 else ""
            head = (f"WARC/1.1\r\nWARC-Type: {kind}\r\nWARC-Record-ID: {record_id}\r\n"
                    f"WARC-Date: {date}\r\n{fields}WARC-Block-Digest: sha1:{block_label}\r\n"
                    f"{payload}Content-Length: {len(block)}\r\n\r\n")
            # one call: deflate's fixed cost per call is a large share of a 1 KB record's
            out.append(compress(b"".join((head.encode(), block, b"\r\n\r\n")),
                                level if len(block) >= small else fast, _GZIP_WBITS))
        return out
