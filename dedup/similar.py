"""`--similar`: large files that share regions, found with content-defined chunks (FastCDC).

Each candidate file is cut by pyfastcdc (Cython FastCDC 2020; picked over `fastcdc` by measure:
bench/dedup/cdc_speed.py, see bench/RESULTS.md) and each chunk hashed with 128-bit mmh3. Because
cut points depend only on nearby content, an insertion, deletion or move changes only the chunks
around it; two files' shared bytes are the bytes of the chunks they have in common. Chunk lists go
into the --cache file, keyed like digests (device, inode, size, mtime), and so do the bytes each
pair's edit ends gave back (`refine`), so a rerun reads nothing. With the default hash the chunk
lists also decide which large files are identical (`Chunker.split`): one read serves both.

`shared_bytes` and `similar_pairs` are pure; `chunk_file` is the I/O edge (bounded readinto,
never mmap, as the rest of dedup).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import mmh3

from dedup import hashing
from dedup.grouping import CandidateGroup, split_by
from dedup.hashcache import RACY_WINDOW_NS, DigestCache, HashCache
from dedup.hashing import open_for_read
from dedup.model import DuplicateGroup, FileEntry, FileProblem, SimilarPair
from dedup.options import ScanOptions
from dedup.walk import describe_os_error

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from dedup.hashing import Opener


# pyfastcdc's avg_size, min_size, max_size and normalized chunking level, by measure
# (bench/dedup/cdc_speed.py, bench/dedup/beyond.py): a cut point is never sought in a chunk's
# first MIN_CHUNK bytes, and level 2 makes a cut likely soon after them, so the gear hash scans
# a fraction of the bytes: cutting and hashing run at 1.2x the speed of pyfastcdc's defaults
# with min = avg, 1.9x that of its defaults (min = avg / 4, level 1); chunks average 64 KiB.
# Level 3, or min = avg = 64 KiB at level 2, were faster still but resynchronised slowly after
# an edit: shared bytes came out up to 2.8 MB (243 KB) short on the bench's moved blocks, where
# this setting, like the defaults, is exact once `refine` has given back the edit ends.
AVG_CHUNK = 48 * 1024
MIN_CHUNK = 48 * 1024
MAX_CHUNK = 256 * 1024
LEVEL = 2
MEAN_CHUNK = AVG_CHUNK + MIN_CHUNK  # pyfastcdc's docs: chunks average avg + min (an upper bound)
WINDOW = 2 * 1024 * 1024  # bytes read at a time: in the CPU cache, and > MAX_CHUNK (chunk_file)
CACHE_SPAN = f"cdc:pyfastcdc:{AVG_CHUNK}:{MIN_CHUNK}:{MAX_CHUNK}:{LEVEL}"
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
           opener: Opener = open_for_read) -> tuple[int, int]:
    """Return (bytes at the ends of *a*'s unshared runs that equal *b* there, bytes read)."""
    extra = 0
    read = [0]  # bytes read from both files, for the run's stats
    fa, fb = opener(a_path), opener(b_path)
    try:
        for a_start, a_end, after, before, limit in gaps(a, b, b_size):
            head = _common(fa, a_start, fb, after, min(limit, b_size - after), read,
                           forward=True)
            tail = _common(fa, a_end, fb, before, min(limit - head, before), read,
                           forward=False)
            extra += head + tail
    finally:
        fa.close()
        fb.close()
    return extra, read[0]


def _common(fa, a_at: int, fb, b_at: int, limit: int, read: list[int], *,  # type: ignore[no-untyped-def]
            forward: bool) -> int:
    # Common prefix (forward) from a_at/b_at, or common suffix (backward) ending there, read in
    # steps of STEP bytes and stopped at the first difference (most ends differ within a step).
    # Adds the bytes read to read[0]. Steps doubling to 256 KiB (half the reads, an XOR of the
    # two as integers to find the difference) measured slower on the bench: 37 ms against 21.
    from dedup.hashing import read_exact

    done = 0
    while done < limit:
        n = min(STEP, limit - done)
        # bytearrays, not memoryviews: their == is a memcmp, a memoryview's goes byte by byte.
        x, y = bytearray(n), bytearray(n)
        for f, at, buf in ((fa, a_at, x), (fb, b_at, y)):
            f.seek(at + done if forward else at - done - n)
            got = read_exact(f, memoryview(buf), n)
            read[0] += got
            if got != n:
                return done
        if x == y:
            done += n
            continue
        # Binary search: the longest equal prefix, or suffix going backward.
        low, high = 0, n
        while low < high:
            mid = (low + high + 1) // 2
            if (x[:mid] == y[:mid]) if forward else (x[n - mid:] == y[n - mid:]):
                low = mid
            else:
                high = mid - 1
        return done + low
    return done


def chunk_file(path: str, size: int, opener: Opener = open_for_read) -> Chunks:
    """Cut the file at *path* into FastCDC chunks and hash each; raise OSError if it changed size."""
    from pyfastcdc import FastCDC  # lazy: only --similar needs it

    cdc = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK, normalized_chunking=LEVEL)
    digest = mmh3.mmh3_x64_128_digest
    view = memoryview(bytearray(WINDOW))
    chunks: Chunks = []
    filled = total = 0
    eof = False
    f = opener(path)
    try:
        while True:
            while filled < WINDOW:
                got = f.readinto(view[filled:])
                if not got:
                    eof = True
                    break
                filled += got
            start = filled
            for chunk in cdc.cut_buf(view[:filled]):
                # Only the window's last chunk may end elsewhere in the whole file: pyfastcdc's
                # gear scan from a chunk's start tests the same positions with the same masks
                # however much follows, so a cut it finds before the window's end is final (and
                # a chunk cut at MAX_CHUNK is final too). The last one is cut again from the next
                # window; the test holds chunk_file to one cut_buf over the whole file.
                if not eof and chunk.offset + chunk.length == filled:
                    start = chunk.offset
                    break
                chunks.append((chunk.length, digest(chunk.data)))
            total += start
            if eof:
                break
            view[: filled - start] = bytes(view[start:filled])
            filled -= start
    finally:
        f.close()
    if total != size:
        raise OSError(f"changed during chunking (expected {size} bytes)")
    return chunks


class Chunker:
    """Chunk lists by file (device, inode): each file is read at most once a run, and not at all
    when the --cache file holds its list (keyed like digests: device, inode, size, mtime)."""

    def __init__(self, cache: DigestCache | None = None, opener: Opener | None = None) -> None:
        self.cache = cache
        self.opener = opener
        self.now_ns = time.time_ns()
        self.lists: dict[tuple[int, int], Chunks] = {}
        self.failed: dict[tuple[int, int], str] = {}
        self.bytes_read = 0

    def load(self, records: Iterable[tuple], pool: Executor | None = None) -> list[FileProblem]:
        """Chunk every record (path, size, dev, ino, mtime_ns, ...) not known yet, in *pool*'s
        threads if given (the cut runs without the GIL); return the new problems."""
        todo, wanted = [], set()
        for record in records:
            fid = (record[2], record[3])
            if fid not in self.lists and fid not in self.failed and fid not in wanted:
                wanted.add(fid)
                cached = self._cached(FileEntry(*record[:5]))
                if cached is not None:
                    self.lists[fid] = cached
                else:
                    todo.append(record)
        # The cache is read and written here, in this thread: only the chunking is in the pool.
        if pool is None or len(todo) < 2:
            jobs: Iterable[tuple[tuple, Chunks | str, int]] = map(self._read, todo)
        else:
            from dedup.jobs import bounded_map

            jobs = bounded_map(pool, self._read, todo, 4)
        problems = []
        for record, chunks, nbytes in jobs:
            fid = (record[2], record[3])
            if isinstance(chunks, str):
                self.failed[fid] = chunks
                problems.append(FileProblem(record[0], chunks))
                continue
            self.lists[fid] = chunks
            self.bytes_read += nbytes
            if self.cache is not None:
                self.cache.put(FileEntry(*record[:5]), "mmh3", CACHE_SPAN, pack_chunks(chunks),
                               self.now_ns)
        return problems

    def _read(self, record: tuple) -> tuple[tuple, Chunks | str, int]:
        # Runs in a worker thread: touches no shared state.
        opener = self.opener or hashing.open_for_read  # looked up per call: tests patch it
        try:
            return record, chunk_file(record[0], record[1], opener), record[1]
        except OSError as exc:
            return record, describe_os_error(exc), 0

    def split(self, groups: list[CandidateGroup], problem: Callable[[FileProblem], None],
              pool: Executor | None = None) -> list[CandidateGroup]:
        """Split groups of same-size files by chunk list: equal lists (every chunk's length and
        128-bit digest) mean equal content, as a full digest does, and the file is read once for
        both --similar and the grouping."""
        for item in self.load((r for g in groups for r in g), pool):
            problem(item)
        lists = self.lists

        def key(record: tuple) -> bytes | None:
            chunks = lists.get((record[2], record[3]))
            return None if chunks is None else pack_chunks(chunks)

        return split_by(groups, key)

    def refined(self, a: tuple, b: tuple) -> int:
        """Return `refine`'s extra shared bytes for records *a* and *b*, from the cache if there."""
        span = f"refine:{CACHE_SPAN}:{b[2]}:{b[3]}:{b[1]}:{b[4]}"  # b's version is in the key
        entry = FileEntry(*a[:5])
        if self.cache is not None:
            value = self.cache.get(entry, "mmh3", span)
            if value is not None and len(value) == 8:
                return int.from_bytes(value, "little")
        opener = self.opener or hashing.open_for_read
        extra, nbytes = refine(a[0], self.lists[(a[2], a[3])], b[0], self.lists[(b[2], b[3])],
                               b[1], opener)
        self.bytes_read += nbytes  # the run's stats count every byte read, these too
        if self.cache is not None and b[4] <= self.now_ns - RACY_WINDOW_NS:
            self.cache.put(entry, "mmh3", span, extra.to_bytes(8, "little"), self.now_ns)
        return extra

    def _cached(self, entry: FileEntry) -> Chunks | None:
        if self.cache is None:
            return None
        value = self.cache.get(entry, "mmh3", CACHE_SPAN)
        if value is None:
            return None
        try:
            return unpack_chunks(value)
        except ValueError:
            return None


def find_similar(candidates: Iterable[tuple[str, int, int, int, int]],
                 groups: Sequence[DuplicateGroup], options: ScanOptions, *, threshold: int = 50,
                 cache: DigestCache | None = None, opener: Opener | None = None,
                 chunker: Chunker | None = None, pool: Executor | None = None,
                 ) -> tuple[list[SimilarPair], list[tuple[str, str]]]:
    """Return similar pairs among *candidates* (path, size, dev, ino, mtime_ns) and read errors.

    Hard links count once; of a group of identical files only its first path takes part (the
    others are in "groups" already). A file the *chunker* failed on before is left out silently
    (its error is reported already).
    """
    skip = {e.path for g in groups for e in g.entries[1:]}
    seen: set[tuple[int, int]] = set()
    owned = None
    if chunker is None:
        if cache is None and options.cache_path is not None:
            cache = owned = HashCache(options.cache_path)
        chunker = Chunker(cache, opener)
    files: list[tuple[str, int, Chunks]] = []
    records: dict[str, tuple] = {}
    try:
        todo = []
        for record in sorted(candidates):
            path, _, dev, ino, _ = record[:5]
            if path in skip or (dev, ino) in seen or (dev, ino) in chunker.failed:
                continue  # a failure before this call is reported already
            seen.add((dev, ino))
            todo.append(record)
        problems = [(p.path, p.error) for p in chunker.load(todo, pool)]
        for record in todo:
            chunks = chunker.lists.get((record[2], record[3]))
            if chunks is not None:
                files.append((record[0], record[1], chunks))
                records[record[0]] = record
        pairs = []
        for pair in similar_pairs(files, threshold):
            a, b = pair.paths
            try:
                extra = chunker.refined(records[a], records[b])
            except OSError:
                extra = 0  # the chunk-level figure stands; the file is reported if it fails later
            pairs.append(SimilarPair(pair.paths, pair.sizes, pair.shared_bytes + extra))
    finally:
        if owned is not None:
            owned.close()
    pairs.sort(key=lambda p: (-p.shared_bytes, p.paths))
    return pairs, problems
