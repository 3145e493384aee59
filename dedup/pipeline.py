"""Orchestration: scan → group by size → partial keys → full digests or lockstep verify → Report.

Scanned files are rows of a columnar table (dedup.table) and size buckets hold their indices;
records — plain tuples in `FileEntry` field order (see dedup.grouping) — are built only for the
files compared or reported, and a bucket's hard links are collapsed when the bucket is compared.
With more than one CPU the walk (dedup.subtrees) and the small-file stage (`_compare_small`) are
shared among forked processes (dedup.processes); the report does not depend on their number.
"""

from __future__ import annotations

import gc
import os
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from dedup import hashing
from dedup.grouping import (
    CandidateGroup,
    Record,
    collapse_bucket,
    expand_groups,
)
from dedup.hashcache import DigestCache, HashCache
from dedup.hashing import Opener
from dedup.heads import Heads
from dedup.jobs import IO_DEPTH, Inline, LazyPool
from dedup.largefiles import LargeFiles
from dedup.listing import Listing, walk_listings
from dedup.model import FileProblem, Report, Stats
from dedup.options import PathSelection, ScanOptions
from dedup.processes import usable_cpus
from dedup.report import quote_path
from dedup.smallfiles import MAX_PROCS, SmallFiles
from dedup.table import FileTable, PackedDirs, SizeBuckets
from dedup.walk import Scandir, WalkCounters
from dedup.warn import warning

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from dedup.extras import Extras
    from dedup.prefetch import Plan

ProgressFn = Callable[[str, int, int], None]
# Returns the classes of identical files among same-size candidate groups (hard links: the map).
Prover = Callable[[list[CandidateGroup], dict[tuple[int, int], list[Record]],
                   Callable[[FileProblem], None]], list[CandidateGroup]]


def find_duplicates(
    paths: Sequence[str],
    options: ScanOptions | None = None,
    *,
    on_progress: ProgressFn | None = None,
    opener: Opener | None = None,
    scandir: Scandir = os.scandir,
    cache: DigestCache | None = None,
    extras: Extras | None = None,
    prove: Prover | None = None,
) -> Report:
    """Scan *paths* and return every group of identical files, with problems and counters.

    Never modifies anything. A path that cannot be read is a `FileProblem` and leaves only itself
    out of its group. `on_progress(phase, done, total)` is called from this thread between jobs.
    *extras* (--dirs, --similar) keeps what it needs of this run's walk and reads. *prove*
    (--dedupe: dedup.kernelproof) replaces the byte compare of large candidate groups when
    neither --verify nor a cache decides.
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
    run = _Run(options, progress, opener, cache, now_ns)
    run.extras, run.prove = extras, prove
    try:
        run.start_io(paths)
        groups = run.compare(*run.candidates(run.scan(paths, scandir)))
        run.stop_io()  # its threads and their buffers are not needed any more
        # Groups of small files are still table indices (4 bytes a file): their records are
        # built now, a group at a time, only for the files that are duplicates, and packed into
        # the report's group at once (model.DuplicateGroup); each directory's names are freed
        # once its last one is built, then the rest of the columns. Building every entry first
        # put the pyenv run's peak at the report (32 -> 45 MB RSS).
        duplicate_groups = expand_groups(run.all_entries(groups), run.links, consume=True,
                                         ordered=run.ordered)
        del groups
        run.table = FileTable()
    finally:
        run.stop_io()
        if run.read_ahead is not None:
            run.read_ahead.stop()
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


class _Run(SmallFiles, Heads, LargeFiles):
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
        self.table = FileTable()
        self.io_threads = 1
        self.procs = 1
        self.io_pool: Executor | None = None
        self.extras: Extras | None = None
        self.cold: bool | None = None  # did a small file miss the page cache (None: not known)
        self.prove: Prover | None = None
        self.read_ahead: Plan | None = None
        self.ordered = False

    def start_io(self, paths: Sequence[str]) -> None:
        """Decide the I/O threads (`ScanOptions.io_threads`, or by device kind: dedup.device)
        and the processes (one per usable CPU, at most `MAX_PROCS`, never more than the I/O
        threads); start the I/O pool now only if an explicit --threads lists ahead in it."""
        threads = self.options.io_threads
        if threads is None:
            from dedup.device import io_threads_for

            threads = io_threads_for(paths)
        self.io_threads = threads
        self.procs = min(usable_cpus(), threads, MAX_PROCS)
        if self.options.io_threads is not None and self.procs <= 1:
            self.start_pool()  # the walk lists ahead in it (with processes: dedup.subtrees)

    def start_pool(self) -> None:
        """Start the I/O pool (walk listings, reads not in the page cache) if more than one
        I/O thread is wanted and it is not running."""
        if self.io_threads > 1 and self.io_pool is None:
            self.io_pool = LazyPool(self.io_threads, "dedup-io")  # type: ignore[assignment]

    def stop_io(self) -> None:
        if self.io_pool is not None:
            self.io_pool.shutdown(wait=True, cancel_futures=True)
            self.io_pool = None

    def release_table(self) -> None:
        """Free the scan's columns, unless --dirs or --similar read them after the scan."""
        if self.extras is None:
            self.table = FileTable()

    def size_of(self, group: CandidateGroup | array) -> int:
        return self.table.size[group[0]] if type(group) is array else group[0][1]

    def records(self, group: CandidateGroup | array) -> CandidateGroup:
        """Return a candidate group as records (a group of indices is built from the table)."""
        if type(group) is array:
            return self.table.records(group, self.table.size[group[0]])
        return group

    def all_entries(self, groups: list[CandidateGroup | array]) -> Iterator[CandidateGroup]:
        """Yield *groups* with each group of table indices as records, a group at a time
        (each leaves *groups* as it is yielded), freeing each directory's names in the table
        after its last use."""
        table = self.table
        file_dir = table.file_dir
        last: dict[int, int] = {}  # directory -> position of its last file in the groups
        at = 0
        for group in groups:
            if type(group) is array:
                for i in group:
                    last[file_dir[i]] = at
                    at += 1
        at = 0
        if self.extras is not None:
            last.clear()  # --dirs and --similar read the table after the scan: keep every name
        for k, group in enumerate(groups):
            groups[k] = []  # type: ignore[call-overload]
            if type(group) is not array:
                yield group
                continue
            size = table.size[group[0]]
            records = []
            for i in group:
                records.append(table.record(i, size))
                d = file_dir[i]
                if last.get(d) == at:
                    table.names[d] = table.prefixes[d] = ""
                at += 1
            yield records

    def problem(self, item: FileProblem) -> None:
        self.problems.append(item)
        warning(__name__, "%s: %s", quote_path(item.path), item.error)

    def scan(self, paths: Sequence[str], scandir: Scandir) -> SizeBuckets:
        """Fill the table; return its files by size."""
        options = self.options
        selection = PathSelection(options)
        globs = bool(options.include or options.exclude)
        lowest = max(options.min_size, 0 if options.include_empty else 1)
        highest = options.max_size if options.max_size is not None else float("inf")
        by_size = SizeBuckets()
        count = filtered = 0
        progress = self.progress
        table = self.table
        problem = self.problem
        tree = self.extras.tree if self.extras is not None else None
        if tree is not None:
            tree.table = table
        enters_dir = selection.enters_dir if options.exclude else None
        select = selection.selects_file if globs else None
        listings: Iterable[PackedDirs | tuple[str, int, int, Listing] | None]
        if (self.procs > 1 and tree is None and scandir is os.scandir
                and not options.follow_symlinks):
            # Listing is Python work per entry: forked processes share the subtrees (pyenv tree,
            # warm: scan 0.9 -> 0.5 s on 2 cores). Threads did not pay (cold: 2.5 s with 1 or 16
            # threads; warm: 0.9 -> 1.5 s, the GIL handed over at every stat).
            from dedup.subtrees import walk_forked

            listings = walk_forked(
                paths, procs=self.procs, one_file_system=options.one_file_system,
                enters_dir=enters_dir, counters=self.walk_counts, lowest=lowest,
                highest=highest, select=select)
        else:
            listings = walk_listings(
                paths, follow_symlinks=options.follow_symlinks,
                one_file_system=options.one_file_system, enters_dir=enters_dir,
                counters=self.walk_counts, scandir=scandir, lowest=lowest, highest=highest,
                select=select,
                # Only an explicit --threads lists ahead in threads (see above).
                pool=self.io_pool if self.options.io_threads is not None else None,
                window=self.io_threads * IO_DEPTH,
                others=self.extras.others if self.extras is not None else None)
        deferred: list[tuple[str, str]] = []  # a forked walk's problems, reported once it ends
        for item in listings:
            if item is None:  # the forked walk's listings so far are void (dedup.subtrees)
                table = self.table = FileTable()
                by_size.clear()
                deferred.clear()
                count = filtered = 0
                continue
            if type(item) is PackedDirs:  # a forked walk's task: the table's own columns
                dirs: PackedDirs = item  # type: ignore[assignment]
                deferred += dirs.problems
                filtered += dirs.filtered
                first = table.add_packed(dirs)
                count += len(dirs)
                by_size.add(table.size[first:], first)
                progress("scan", count, 0)
                continue
            prefix, root, dev, listing = item  # type: ignore[misc]
            for found in listing.problems:
                problem(found)
            filtered += listing.filtered
            sizes = listing.sizes
            if not sizes:
                if tree is not None:
                    tree.add(prefix, root, listing, -1, -1)
                continue
            first = table.add_dir(prefix, root, dev, listing.names, sizes, listing.inos,
                                  listing.mtimes, listing.other_devs, listing.linked)
            if tree is not None:
                tree.add(prefix, root, listing, first, len(table.prefixes) - 1)
            count += len(sizes)
            by_size.add(sizes, first)
            progress("scan", count, 0)
        for path, error in deferred:
            problem(FileProblem(path, error))
        progress("scan", count, count)
        self.files, self.filtered = count, filtered
        return by_size

    def candidates(self, buckets: SizeBuckets) -> tuple[list[CandidateGroup | array],
                                                         list[CandidateGroup]]:
        """Empty *buckets* into groups of two or more distinct files, as (groups of at most
        `hashing.WHOLE_LIMIT` bytes, larger ones as records); count files and bytes.

        A small group is an array of table indices, or (a bucket with hard links) records.
        Only the sizes that repeat are visited (the rest are counted from the table's column).
        """
        small: list[CandidateGroup | array] = []
        large: list[CandidateGroup] = []
        limit = hashing.WHOLE_LIMIT
        by_size = buckets.by_size
        table = self.table
        inos = table.ino
        linked = linked_bytes = 0  # the paths of a file beyond its first
        # Only a size some possibly linked file has (see FileTable.linked) can hold one file
        # twice: the other buckets are not checked (that check was 25 of 30 ms, pyenv tree).
        suspect = {table.size[i] for i in table.linked}
        for size in reversed(buckets.repeated):
            bucket: CandidateGroup | array = by_size[size]  # type: ignore[assignment]
            # Distinct inodes: no hard link. Most buckets are pairs: two reads, no set.
            if size in suspect and not (inos[bucket[0]] != inos[bucket[1]] if len(bucket) == 2
                    else len({inos[i] for i in bucket}) == len(bucket)):
                reps = collapse_bucket(table.records(bucket, size), self.links)
                linked += len(bucket) - len(reps)
                linked_bytes += size * (len(bucket) - len(reps))
                if len(reps) < 2:
                    continue
                bucket = reps
            if size <= limit:
                small.append(bucket)
            else:
                large.append(self.records(bucket))
        buckets.clear()
        self.distinct_files = self.files - linked
        self.bytes_scanned = sum(table.size) - linked_bytes
        return small, large

    def compare(self, small: list[CandidateGroup | array], large: list[CandidateGroup]
                ) -> list[CandidateGroup | array]:
        served = False  # are the large files read ahead whole (no reader threads for them)
        if self.io_threads > 1 and self.opener is hashing._DEFAULT_OPENER and (small or large):
            # A cold page cache: a helper reads ahead in inode order (dedup.prefetch), and the
            # small groups are compared in the order it completes them. It keeps the disk busy:
            # reader threads would only wait on the pages it asked for (cold, without them: the
            # same time, 0.7 MiB less peak RSS on the pyenv tree, 2.3 MiB on /usr/lib).
            from dedup import prefetch

            self.read_ahead = prefetch.start(self.table, small, large, hashing.EDGE)
            if self.read_ahead is not None:
                small, self.read_ahead.small = self.read_ahead.small, []
                self.io_threads = 1
                served = self.read_ahead.whole_large
        if small:
            if self.cache is not None and not self.options.verify:
                small = self._split_partial(small)
            else:
                # Warm, and only the byte compare decides the large groups: their stage can
                # run beside the small files' (it empties *large* when it did).
                alone = (self.read_ahead is None and self.cache is None and self.extras is None
                         and self.prove is None)
                small = self._compare_small(small, large if alone else None)
        chunked: list[CandidateGroup] = []
        if large and self.extras is not None:  # --similar: chunk lists split the largest
            large, chunked, nbytes = self.extras.split_large(large, self.problem)
            self.bytes_read += nbytes
        if not large and not (chunked and self.options.verify):
            return small + chunked
        # The partial stage runs in this thread: its reads are small and from the page cache, and
        # two threads handing the GIL over at every syscall ran it 1.5x slower (bench small corpus).
        # With a warm page cache (the small files all were), no pool: its threads cost time and
        # 3 MB of peak RSS on the 113,000-file tree, for reads served from memory.
        cold = self.cold is not False and not served
        if cold:
            self.start_pool()
        large = self._split_partial(large, self.io_pool if cold else None)
        threads = self.options.threads
        if threads > 1 and cold:
            from concurrent.futures import ThreadPoolExecutor  # lazy: only big files need it

            pool: Executor = ThreadPoolExecutor(threads, thread_name_prefix="dedup")
        else:
            pool = Inline()
        with pool:
            if self.options.verify:
                return small + self._verify(pool, large + chunked)
            if self.cache is None:
                if self.prove is not None:
                    before = getattr(self.prove, "bytes_read", 0)
                    proven = self.prove(large, self.links, self.problem)
                    self.bytes_read += getattr(self.prove, "bytes_read", 0) - before
                    return small + chunked + proven
                # Comparing in lockstep stops reading a file at its first differing chunk, where a
                # digest reads it all: 1.39x -> about 1.1x the minimum bytes on bench large.
                return small + chunked + self._verify(pool, large)
            return small + chunked + self._split_by_digest(pool, large, "full")

