"""Orchestration: scan → group by size → partial keys → full digests or lockstep verify → Report.

Scanned files are rows of a columnar table (dedup.table) and size buckets hold their indices;
records — plain tuples in `FileEntry` field order (see dedup.grouping) — are built only for the
files compared or reported, and a bucket's hard links are collapsed when the bucket is compared.
With more than one CPU the walk (dedup.subtrees) and the small-file stage (`_compare_small`) are
shared among forked processes (dedup.processes); the report does not depend on their number.
The stages are mixins of the run: dedup.sizing (scan, candidates), dedup.heads, dedup.smallfiles
and dedup.largefiles.
"""

from __future__ import annotations

import gc
import os
import time
from array import array

from dedup import hashing
from dedup.grouping import (
    CandidateGroup,
    Record,
    expand_groups,
)
from dedup.heads import Heads
from dedup.jobs import Inline, LazyPool, no_progress
from dedup.largefiles import LargeFiles
from dedup.model import FileProblem, Report, Stats
from dedup.options import ScanOptions
from dedup.processes import reap, usable_cpus
from dedup.report import quote_path
from dedup.sizing import Sizing
from dedup.smallfiles import MAX_PROCS, SmallFiles
from dedup.table import FileTable
from dedup.walk import WalkCounters
from dedup.warn import warning

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from concurrent.futures import Executor

    from dedup.extras import Extras
    from dedup.hashcache import DigestCache
    from dedup.hashing import Opener
    from dedup.prefetch import Plan
    from dedup.walk import Scandir

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
    progress = on_progress or no_progress
    owned_cache = None
    if cache is None and options.cache_path is not None:
        from dedup.hashcache import HashCache  # lazy: only --cache runs need it

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
        reap()  # the forked processes, done before now (dedup.processes.reap_later)
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


class _Run(Sizing, SmallFiles, Heads, LargeFiles):
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
            # None, not a new empty list each: 186,003 of them raised the 1,000,000-file
            # run's peak RSS by 9 MB (its groups come made: nothing is freed for them).
            groups[k] = None  # type: ignore[call-overload]
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
                self.miss_budget = 0  # cold: the first miss ends the warm path (dedup.heads)
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

