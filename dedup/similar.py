"""`--similar`: large files that share regions, found with content-defined chunks (FastCDC).

Each candidate file is cut by pyfastcdc (Cython FastCDC 2020; picked over `fastcdc` by measure:
bench/dedup/cdc_speed.py, see bench/RESULTS.md) and each chunk hashed with 128-bit mmh3. Because
cut points depend only on nearby content, an insertion, deletion or move changes only the chunks
around it; two files' shared bytes are the bytes of the chunks they have in common. Chunk lists go
into the --cache file, keyed like digests (device, inode, size, mtime), so a rerun reads nothing.

`shared_bytes` and `similar_pairs` are pure; `chunk_file` is the I/O edge (bounded readinto,
never mmap, as the rest of dedup).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable, Sequence

import mmh3

from dedup.hashcache import DigestCache, HashCache
from dedup.hashing import Opener, open_for_read
from dedup.model import DuplicateGroup, FileEntry, SimilarPair
from dedup.options import ScanOptions
from dedup.walk import describe_os_error

log = logging.getLogger(__name__)

AVG_CHUNK = 64 * 1024  # pyfastcdc's avg_size; its chunks average avg + min (about 80 KiB)
CACHE_SPAN = f"cdc:pyfastcdc:{AVG_CHUNK}"
# A chunk held by more files than this (zero pages, padding) links everything to everything: it
# is left out of pair finding (each pair's shared bytes are still counted from its own chunks).
COMMON_CHUNK_FILES = 64
STEP = 16 * 1024  # bytes compared at a time when giving back the ends of an edited region
_RECORD = struct.Struct("<I16s")  # chunk length, mmh3 x64 128 digest

Chunks = list[tuple[int, bytes]]  # (length, digest) in file order


def pack_chunks(chunks: Chunks) -> bytes:
    """Return *chunks* as bytes for the cache (20 bytes a chunk)."""
    return b"".join(_RECORD.pack(length, digest) for length, digest in chunks)


def unpack_chunks(data: bytes) -> Chunks:
    """Return the chunk list `pack_chunks` stored; raise ValueError on a damaged value."""
    if len(data) % _RECORD.size:
        raise ValueError("damaged chunk list")
    return [tuple(x) for x in _RECORD.iter_unpack(data)]  # type: ignore[misc]


def shared_bytes(a: Chunks, b: Chunks) -> int:
    """Return the bytes of chunks common to *a* and *b*, each chunk counted min(times in a, in b)."""
    counts: dict[bytes, int] = {}
    for _, digest in b:
        counts[digest] = counts.get(digest, 0) + 1
    total = 0
    for length, digest in a:
        left = counts.get(digest, 0)
        if left:
            counts[digest] = left - 1
            total += length
    return total


def similar_pairs(files: Sequence[tuple[str, int, Chunks]], threshold: int) -> list[SimilarPair]:
    """Return pairs sharing at least *threshold* % of the smaller file's bytes, most shared first."""
    holders: dict[bytes, list[int]] = {}
    for index, (_, _, chunks) in enumerate(files):
        for digest in {d for _, d in chunks}:
            holders.setdefault(digest, []).append(index)
    candidates: set[tuple[int, int]] = set()
    for owners in holders.values():
        if 1 < len(owners) <= COMMON_CHUNK_FILES:
            candidates.update((x, y) for i, x in enumerate(owners) for y in owners[i + 1:])
    pairs = []
    for x, y in candidates:
        (pa, sa, ca), (pb, sb, cb) = files[x], files[y]
        common = shared_bytes(ca, cb)
        if common * 100 >= threshold * min(sa, sb) and common > 0:
            pairs.append(SimilarPair(paths=(pa, pb), sizes=(sa, sb), shared_bytes=common))
    pairs.sort(key=lambda p: (-p.shared_bytes, p.paths))
    return pairs


def gaps(a: Chunks, b: Chunks, b_size: int) -> list[tuple[int, int, int, int, int]]:
    """Return each run of *a*'s chunks missing from *b*, with where *b*'s side of it must lie.

    Tuples (a_start, a_end, b_after, b_before, limit): the run is bytes [a_start, a_end) of a; the
    chunk before it in a sits in b ending at b_after, the chunk after it starts in b at b_before.
    Bytes of the run equal to b just after b_after (a common prefix) or just before b_before (a
    common suffix) are shared too, up to *limit* in all: the cut points an edit moved cost whole
    chunks, which these ends give back.
    """
    b_digests = {d for _, d in b}
    b_end: dict[bytes, int] = {}
    b_start: dict[bytes, int] = {}
    offset = 0
    for length, digest in b:
        b_start.setdefault(digest, offset)
        b_end.setdefault(digest, offset + length)
        offset += length
    out = []
    a_off = 0
    i = 0
    while i < len(a):
        if a[i][1] in b_digests:
            a_off += a[i][0]
            i += 1
            continue
        j, end = i, a_off
        while j < len(a) and a[j][1] not in b_digests:
            end += a[j][0]
            j += 1
        after = b_end[a[i - 1][1]] if i > 0 else 0
        before = b_start[a[j][1]] if j < len(a) else b_size
        limit = end - a_off if before < after else min(end - a_off, before - after)
        out.append((a_off, end, after, before, limit))
        a_off, i = end, j
    return out


def refine(a_path: str, a: Chunks, b_path: str, b: Chunks, b_size: int,
           opener: Opener = open_for_read) -> int:
    """Return the bytes at the ends of *a*'s unshared runs that equal *b* there (reads only those)."""
    extra = 0
    fa, fb = opener(a_path), opener(b_path)
    try:
        for a_start, a_end, after, before, limit in gaps(a, b, b_size):
            head = _common(fa, a_start, fb, after, min(limit, b_size - after), forward=True)
            tail = _common(fa, a_end, fb, before, min(limit - head, before), forward=False)
            extra += head + tail
    finally:
        fa.close()
        fb.close()
    return extra


def _common(fa, a_at: int, fb, b_at: int, limit: int, *, forward: bool) -> int:  # type: ignore[no-untyped-def]
    # Common prefix (forward) from a_at/b_at, or common suffix (backward) ending there, read in
    # steps of STEP bytes and stopped at the first difference (most ends differ within a step).
    from dedup.hashing import read_exact

    done = 0
    while done < limit:
        n = min(STEP, limit - done)
        x, y = memoryview(bytearray(n)), memoryview(bytearray(n))
        for f, at, buf in ((fa, a_at, x), (fb, b_at, y)):
            f.seek(at + done if forward else at - done - n)
            if read_exact(f, buf, n) != n:
                return done
        if not forward:
            x, y = x[::-1], y[::-1]
        if x == y:
            done += n
            continue
        low, high = 0, n  # binary search with memoryview equality: memcmp speed, no byte loop
        while low < high:
            mid = (low + high + 1) // 2
            if x[:mid] == y[:mid]:
                low = mid
            else:
                high = mid - 1
        return done + low
    return done


def chunk_file(path: str, size: int, opener: Opener = open_for_read) -> Chunks:
    """Cut the file at *path* into FastCDC chunks and hash each; raise OSError if it changed size."""
    from pyfastcdc import FastCDC  # lazy: only --similar needs it

    digest = mmh3.mmh3_x64_128_digest
    f = opener(path)
    try:
        chunks = [(c.length, digest(c.data)) for c in FastCDC(AVG_CHUNK).cut_stream(f)]
    finally:
        f.close()
    if sum(length for length, _ in chunks) != size:
        raise OSError(f"changed during chunking (expected {size} bytes)")
    return chunks


def find_similar(candidates: Iterable[tuple[str, int, int, int, int]],
                 groups: Sequence[DuplicateGroup], options: ScanOptions, *, threshold: int = 50,
                 cache: DigestCache | None = None,
                 opener: Opener = open_for_read) -> tuple[list[SimilarPair], list[tuple[str, str]]]:
    """Return similar pairs among *candidates* (path, size, dev, ino, mtime_ns) and read errors.

    Hard links count once; of a group of identical files only its first path takes part (the
    others are in "groups" already).
    """
    skip = {e.path for g in groups for e in g.entries[1:]}
    seen: set[tuple[int, int]] = set()
    owned = None
    if cache is None and options.cache_path is not None:
        cache = owned = HashCache(options.cache_path)
    now_ns = time.time_ns()
    files: list[tuple[str, int, Chunks]] = []
    problems: list[tuple[str, str]] = []
    try:
        for path, size, dev, ino, mtime_ns in sorted(candidates):
            if path in skip or (dev, ino) in seen:
                continue
            seen.add((dev, ino))
            entry = FileEntry(path, size, dev, ino, mtime_ns)
            chunks = _cached(cache, entry)
            if chunks is None:
                try:
                    chunks = chunk_file(path, size, opener)
                except OSError as exc:
                    problems.append((path, describe_os_error(exc)))
                    continue
                if cache is not None:
                    cache.put(entry, "mmh3", CACHE_SPAN, pack_chunks(chunks), now_ns)
            files.append((path, size, chunks))
    finally:
        if owned is not None:
            owned.close()
    by_path = {path: chunks for path, _, chunks in files}
    pairs = []
    for pair in similar_pairs(files, threshold):
        (a, b), (_, b_size) = pair.paths, pair.sizes
        try:
            extra = refine(a, by_path[a], b, by_path[b], b_size, opener)
        except OSError:
            extra = 0  # the chunk-level figure stands; the file is reported if it fails later
        pairs.append(SimilarPair(pair.paths, pair.sizes, pair.shared_bytes + extra))
    pairs.sort(key=lambda p: (-p.shared_bytes, p.paths))
    return pairs, problems


def _cached(cache: DigestCache | None, entry: FileEntry) -> Chunks | None:
    if cache is None:
        return None
    value = cache.get(entry, "mmh3", CACHE_SPAN)
    if value is None:
        return None
    try:
        return unpack_chunks(value)
    except ValueError:
        return None
