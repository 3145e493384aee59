"""Orchestration: scan → group by size → partial keys → full digests or lockstep verify → Report."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TypeVar

from dedup import hashing
from dedup.grouping import (
    CandidateGroup,
    collapse_hardlinks,
    expand_groups,
    group_by_size,
    split_by,
)
from dedup.hashcache import DigestCache, HashCache
from dedup.hashing import Opener, full_digest, partial_digest
from dedup.model import FileEntry, FileProblem, Report, Stats
from dedup.options import PathSelection, ScanOptions
from dedup.report import quote_path
from dedup.verify import Partition, partition_identical
from dedup.walk import Scandir, WalkCounters, describe_os_error, walk

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
T = TypeVar("T")
R = TypeVar("R")

# Files per job: large enough that a thread hand-off (~20 µs) is small next to the reads.
BATCH_FILES = 64



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
    try:
        run = _Run(options, progress, opener, cache, now_ns)
        entries = run.scan(paths, scandir)
        reps, links = collapse_hardlinks(entries)
        groups = run.compare(group_by_size(reps))
    finally:
        if owned_cache is not None:
            owned_cache.close()
    duplicate_groups = expand_groups(groups, links)
    stats = Stats(
        files=len(entries),
        dirs=run.walk_counts.dirs,
        bytes_scanned=sum(rep.size for rep in reps),
        groups=len(duplicate_groups),
        duplicate_files=sum(g.file_count - 1 for g in duplicate_groups),
        wasted_bytes=sum(g.wasted_bytes for g in duplicate_groups),
        bytes_read=run.bytes_read,
        errors=len(run.problems),
        hard_links=len(entries) - len(reps),
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
        self.bytes_read = 0
        self.filtered = 0

    def problem(self, item: FileProblem) -> None:
        self.problems.append(item)
        log.warning("%s: %s", quote_path(item.path), item.error)

    def scan(self, paths: Sequence[str], scandir: Scandir) -> list[FileEntry]:
        selection = PathSelection(self.options)
        entries: list[FileEntry] = []
        for item in walk(
            paths,
            follow_symlinks=self.options.follow_symlinks,
            one_file_system=self.options.one_file_system,
            enters_dir=selection.enters_dir if self.options.exclude else None,
            counters=self.walk_counts,
            scandir=scandir,
        ):
            if isinstance(item, FileProblem):
                self.problem(item)
            elif selection.selects_file(item.path, item.size):
                entries.append(item)
                if len(entries) % 4096 == 0:
                    self.progress("scan", len(entries), 0)
            else:
                self.filtered += 1
        self.progress("scan", len(entries), len(entries))
        return entries

    def compare(self, groups: list[CandidateGroup]) -> list[CandidateGroup]:
        threads = self.options.threads
        # The partial stage runs in this thread: its reads are small and from the page cache, and
        # two threads handing the GIL over at every syscall ran it 1.5x slower (bench small corpus).
        groups = self._split_partial(groups)
        with ThreadPoolExecutor(threads, thread_name_prefix="dedup") if threads > 1 else _Inline() as pool:
            small = [g for g in groups if g[0].size <= hashing.WHOLE_LIMIT]
            large = [g for g in groups if g[0].size > hashing.WHOLE_LIMIT]
            if self.options.verify:
                return self._verify(pool, small + large)
            if self.cache is None:
                # Comparing in lockstep stops reading a file at its first differing chunk, where a
                # digest reads it all: 1.39x -> about 1.1x the minimum bytes on bench large.
                return small + self._verify(pool, large)
            return small + self._split_by_digest(pool, large, "full")

    def _split_by_digest(self, pool: Executor, groups: list[CandidateGroup], stage: str) -> list[CandidateGroup]:
        files = [e for g in groups for e in g]
        total = len(files) if stage == "partial" else sum(e.size for e in files)
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
                done += 1 if stage == "partial" else entry.size
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

    def _partial_job(self, entry: FileEntry) -> tuple[FileEntry, bytes | FileProblem, int]:
        span = "whole" if entry.size <= hashing.WHOLE_LIMIT else f"edges:{hashing.EDGE}"
        return self._digest_job(entry, span, partial_digest)

    def _full_job(self, entry: FileEntry) -> tuple[FileEntry, bytes | FileProblem, int]:
        return self._digest_job(entry, "full", full_digest)

    def _digest_job(self, entry: FileEntry, span: str, fn: Callable[..., tuple[bytes, int]]
                    ) -> tuple[FileEntry, bytes | FileProblem, int]:
        name = self.options.hash_name
        if self.cache is not None:
            cached = self.cache.get(entry, name, span)
            if cached is not None:
                return entry, cached, 0
        try:
            value, nbytes = fn(entry.path, entry.size, name, self.opener)
        except OSError as exc:
            return entry, FileProblem(entry.path, describe_os_error(exc)), 0
        if self.cache is not None:
            self.cache.put(entry, name, span, value, self.now_ns)
        return entry, value, nbytes

    def _verify(self, pool: Executor, groups: list[CandidateGroup]) -> list[CandidateGroup]:
        total = sum(len(g) * g[0].size for g in groups)
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
            done += len(group) * group[0].size
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


class _Inline(Executor):
    """An executor that runs each job at submit time: no thread hand-off when --threads 1."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        return future

    def __enter__(self) -> _Inline:
        return self
