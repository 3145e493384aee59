"""Orchestration: scan → group by size → partial keys → full digests or lockstep verify → Report.

Files are plain tuples in `FileEntry` field order until they are reported (see dedup.grouping);
size buckets hold them, and a bucket's hard links are collapsed when the bucket is compared.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from dedup import hashing
from dedup.grouping import (
    CandidateGroup,
    Record,
    collapse_bucket,
    expand_groups,
    split_by,
)
from dedup.hashcache import DigestCache, HashCache
from dedup.hashing import Opener, full_digest, partial_digest
from dedup.model import FileEntry, FileProblem, Report, Stats
from dedup.options import PathSelection, ScanOptions
from dedup.report import quote_path
from dedup.verify import Partition, partition_identical
from dedup.walk import Scandir, WalkCounters, describe_os_error, walk_batches

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
T = TypeVar("T")
R = TypeVar("R")

# Files per job: large enough that a thread hand-off (~20 µs) is small next to the reads.
BATCH_FILES = 64
# --verify: bytes of small files held per size bucket to compare later members in memory. A
# class whose first member's bytes are not held (budget spent) is compared by a lockstep reread.
VERIFY_HOLD = 16 * 1024 * 1024


def find_duplicates(
    paths: Sequence[str],
    options: ScanOptions | None = None,
    *,
    on_progress: ProgressFn | None = None,
    opener: Opener | None = None,
    scandir: Scandir = os.scandir,
    cache: DigestCache | None = None,
) -> Report:
    """Scan *paths* and return every group of identical files, with problems and counters.

    Never modifies anything. A path that cannot be read is a `FileProblem` and leaves only itself
    out of its group. `on_progress(phase, done, total)` is called from this thread between jobs.
    """
    options = options or ScanOptions()
    opener = opener or hashing.open_for_read  # looked up per call: tests patch the module
    started = time.perf_counter()
    now_ns = time.time_ns()
    progress = on_progress or _no_progress
    owned_cache = None
    if cache is None and options.cache_path is not None:
        cache = owned_cache = HashCache(options.cache_path)
    # Nothing here makes reference cycles; the collector would only rescan the growing heap of
    # per-file tuples (about 5% of the run on a 100,000-file tree).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        run = _Run(options, progress, opener, cache, now_ns)
        groups = run.candidates(run.scan(paths, scandir))
        groups = run.compare(groups)
        duplicate_groups = expand_groups(groups, run.links, consume=True)
        del groups
    finally:
        if gc_was_enabled:
            gc.enable()
        if owned_cache is not None:
            owned_cache.close()
    duplicate_files = wasted = 0
    for group in duplicate_groups:
        extra = group.file_count - 1
        duplicate_files += extra
        wasted += extra * group.size
    stats = Stats(
        files=run.files,
        dirs=run.walk_counts.dirs,
        bytes_scanned=run.bytes_scanned,
        groups=len(duplicate_groups),
        duplicate_files=duplicate_files,
        wasted_bytes=wasted,
        bytes_read=run.bytes_read,
        errors=len(run.problems),
        hard_links=run.files - run.distinct_files,
        skipped_symlinks=run.walk_counts.skipped_symlinks,
        skipped_special=run.walk_counts.skipped_special,
        skipped_filtered=run.filtered,
        elapsed_s=round(time.perf_counter() - started, 3),
    )
    problems = sorted(run.problems, key=lambda p: os.fsencode(p.path))
    return Report(tuple(duplicate_groups), tuple(problems), stats, options.policy())


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


class _Run:
    """State of one `find_duplicates` call: options, seams, counters, collected problems."""

    def __init__(self, options: ScanOptions, progress: ProgressFn, opener: Opener,
                 cache: DigestCache | None, now_ns: int) -> None:
        self.options = options
        self.progress = progress
        self.opener = opener
        self.cache = cache
        self.now_ns = now_ns
        self.walk_counts = WalkCounters()
        self.problems: list[FileProblem] = []
        self.links: dict[tuple[int, int], list[Record]] = {}
        self.bytes_read = 0
        self.filtered = 0
        self.files = 0  # selected paths
        self.distinct_files = 0  # selected (device, inode)s
        self.bytes_scanned = 0

    def problem(self, item: FileProblem) -> None:
        self.problems.append(item)
        log.warning("%s: %s", quote_path(item.path), item.error)

    def scan(self, paths: Sequence[str], scandir: Scandir) -> dict[int, Record | list[Record]]:
        """Return the selected files by size: one record alone, or a list once a size repeats."""
        options = self.options
        selection = PathSelection(options)
        globs = bool(options.include or options.exclude)
        lowest = max(options.min_size, 0 if options.include_empty else 1)
        highest = options.max_size if options.max_size is not None else float("inf")
        by_size: dict[int, Record | list[Record]] = {}
        count = filtered = 0
        progress = self.progress
        for batch in walk_batches(
            paths,
            follow_symlinks=options.follow_symlinks,
            one_file_system=options.one_file_system,
            enters_dir=selection.enters_dir if options.exclude else None,
            counters=self.walk_counts,
            scandir=scandir,
        ):
            for item in batch:
                if type(item) is not tuple:
                    self.problem(item)  # type: ignore[arg-type]
                    continue
                size = item[1]
                if not lowest <= size <= highest or (
                        globs and not selection.selects_file(item[0], size)):
                    filtered += 1
                    continue
                count += 1
                bucket = by_size.get(size)
                if bucket is None:
                    by_size[size] = item
                elif type(bucket) is tuple:
                    by_size[size] = [bucket, item]
                else:
                    bucket.append(item)
            progress("scan", count, 0)
        progress("scan", count, count)
        self.files, self.filtered = count, filtered
        return by_size

    def candidates(self, by_size: dict[int, Record | list[Record]]) -> list[CandidateGroup]:
        """Empty *by_size* into groups of two or more distinct files; count files and bytes."""
        groups: list[CandidateGroup] = []
        distinct = scanned = 0
        while by_size:
            # popitem: files of a unique size are freed as we go, not at the end.
            size, bucket = by_size.popitem()
            if type(bucket) is tuple:
                distinct += 1
                scanned += size
                continue
            reps = collapse_bucket(bucket, self.links)
            distinct += len(reps)
            scanned += size * len(reps)
            if len(reps) > 1:
                groups.append(reps)
        self.distinct_files, self.bytes_scanned = distinct, scanned
        return groups

    def compare(self, groups: list[CandidateGroup]) -> list[CandidateGroup]:
        limit = hashing.WHOLE_LIMIT
        small = [g for g in groups if g[0][1] <= limit]
        large = [g for g in groups if g[0][1] > limit]
        del groups
        if small:
            if self.cache is not None and not self.options.verify:
                small = self._split_partial(small)
            else:
                small = self._split_small(small)
        if not large:
            return small
        # The partial stage runs in this thread: its reads are small and from the page cache, and
        # two threads handing the GIL over at every syscall ran it 1.5x slower (bench small corpus).
        large = self._split_partial(large)
        threads = self.options.threads
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor  # lazy: only big files need it

            pool: Executor = ThreadPoolExecutor(threads, thread_name_prefix="dedup")
        else:
            pool = _Inline()
        with pool:
            if self.options.verify or self.cache is None:
                # Comparing in lockstep stops reading a file at its first differing chunk, where a
                # digest reads it all: 1.39x -> about 1.1x the minimum bytes on bench large.
                return small + self._verify(pool, large)
            return small + self._split_by_digest(pool, large, "full")

    def _split_small(self, groups: list[CandidateGroup]) -> list[CandidateGroup]:
        """Split groups of files read whole, once, in this thread, by content digest.

        With --verify the bytes themselves decide: each later member is compared with the bytes
        of its class's first member, held in memory (up to `VERIFY_HOLD` per group), not reread.
        """
        verify = self.options.verify
        digest = hashing.ONE_SHOT[self.options.hash_name]
        opener = self.opener
        read: Callable[[str, int], bytes]
        if opener is hashing._DEFAULT_OPENER:
            read = hashing.read_small  # one call less per file than read_whole
        else:

            def read(path: str, size: int) -> bytes:
                return hashing.read_whole(path, size, opener)

        total = sum(len(g) for g in groups)
        done = reported = nbytes = 0
        result: list[CandidateGroup] = []
        for group in groups:
            size = group[0][1]
            classes: dict[bytes, CandidateGroup] = {}
            held: dict[bytes, bytes] = {}
            recheck: set[bytes] = set()
            budget = VERIFY_HOLD
            for record in group:
                try:
                    data = read(record[0], size)
                except OSError as exc:
                    self.problem(FileProblem(record[0], describe_os_error(exc)))
                    continue
                nbytes += size
                key = digest(data)
                members = classes.get(key)
                if members is None:
                    classes[key] = [record]
                    if verify and budget >= size:
                        held[key] = data
                        budget -= size
                    continue
                members.append(record)
                if verify and held.get(key) != data:
                    recheck.add(key)  # bytes not held, or (never seen) a digest collision
            for key, members in classes.items():
                if len(members) < 2:
                    continue
                if key in recheck:
                    result.extend(self._verify(_Inline(), [members]))
                else:
                    result.append(members)
            done += len(group)
            if done - reported >= 1024 or done == total:
                reported = done
                self.progress("partial", done, total)
        self.bytes_read += nbytes
        return result

    def _split_by_digest(self, pool: Executor, groups: list[CandidateGroup], stage: str) -> list[CandidateGroup]:
        files = [e for g in groups for e in g]
        total = len(files) if stage == "partial" else sum(e[1] for e in files)
        keys: dict[int, bytes] = {}  # by id(entry): each representative is one object
        done = 0
        digest = self._partial_job if stage == "partial" else self._full_job
        for batch_results in bounded_map(pool, lambda batch: [digest(e) for e in batch],
                                         _batches(files, BATCH_FILES), 2 * self.options.threads):
            for entry, outcome, nbytes in batch_results:
                self.bytes_read += nbytes
                if isinstance(outcome, FileProblem):
                    self.problem(outcome)
                else:
                    keys[id(entry)] = outcome
                done += 1 if stage == "partial" else entry[1]
            self.progress(stage, done, total)
        return split_by(groups, lambda e: keys.get(id(e)))

    def _split_partial(self, groups: list[CandidateGroup]) -> list[CandidateGroup]:
        # Group by group, in this thread: only one group's keys are alive at a time (-15 MB peak
        # on the 100,000-file bench corpus compared with keying every file first).
        total = sum(len(g) for g in groups)
        done = reported = 0
        result: list[CandidateGroup] = []
        for group in groups:
            keys: dict[int, bytes] = {}
            for entry in group:
                _, outcome, nbytes = self._partial_job(entry)
                self.bytes_read += nbytes
                if isinstance(outcome, FileProblem):
                    self.problem(outcome)
                else:
                    keys[id(entry)] = outcome
            result.extend(split_by([group], lambda e, keys=keys: keys.get(id(e))))
            done += len(group)
            if done - reported >= 1024 or done == total:
                reported = done
                self.progress("partial", done, total)
        return result

    def _partial_job(self, entry: Record) -> tuple[Record, bytes | FileProblem, int]:
        span = "whole" if entry[1] <= hashing.WHOLE_LIMIT else f"edges:{hashing.EDGE}"
        return self._digest_job(entry, span, partial_digest)

    def _full_job(self, entry: Record) -> tuple[Record, bytes | FileProblem, int]:
        return self._digest_job(entry, "full", full_digest)

    def _digest_job(self, entry: Record, span: str, fn: Callable[..., tuple[bytes, int]]
                    ) -> tuple[Record, bytes | FileProblem, int]:
        name = self.options.hash_name
        if self.cache is not None:
            as_entry = tuple.__new__(FileEntry, entry)  # the DigestCache protocol takes FileEntry
            cached = self.cache.get(as_entry, name, span)
            if cached is not None:
                return entry, cached, 0
        try:
            value, nbytes = fn(entry[0], entry[1], name, self.opener)
        except OSError as exc:
            return entry, FileProblem(entry[0], describe_os_error(exc)), 0
        if self.cache is not None:
            self.cache.put(as_entry, name, span, value, self.now_ns)
        return entry, value, nbytes

    def _verify(self, pool: Executor, groups: list[CandidateGroup]) -> list[CandidateGroup]:
        total = sum(len(g) * g[0][1] for g in groups)
        done = 0
        result: list[CandidateGroup] = []
        opener = self.opener
        jobs = bounded_map(pool, lambda g: partition_identical(g, opener=opener), groups,
                           2 * self.options.threads)
        for group, part in zip(groups, jobs, strict=True):
            assert isinstance(part, Partition)
            self.bytes_read += part.bytes_read
            for item in part.problems:
                self.problem(item)
            result.extend(cls for cls in part.classes if len(cls) > 1)
            done += len(group) * group[0][1]
            self.progress("verify", done, total)
        return result


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def bounded_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """Yield fn(item) for each item in order, with at most *window* jobs submitted at once.

    Bounds memory (results and buffers in flight) where `Executor.map` would submit everything.
    """
    pending: list[Future[R]] = []
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:
        for future in pending:
            future.cancel()


class _Done:
    """A finished job: the part of `Future` that `bounded_map` uses."""

    __slots__ = ("_value", "_error")

    def __init__(self, value: object, error: BaseException | None) -> None:
        self._value, self._error = value, error

    def result(self) -> object:
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> bool:
        return False


class _Inline:
    """Runs each job at submit time: no thread hand-off (and no thread module) for --threads 1."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return _Done(fn(*args, **kwargs), None)
        except Exception as exc:
            return _Done(None, exc)

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
