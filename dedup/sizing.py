"""The scan and the size buckets of a `find_duplicates` run: the walk's listings into the file
table, then the candidates (sizes that repeat, hard links collapsed) split into small and large.

A mixin of dedup.pipeline's run, as dedup.smallfiles, dedup.heads and dedup.largefiles are.
"""

from __future__ import annotations

import os
from array import array
from operator import itemgetter

from dedup import hashing
from dedup.grouping import CandidateGroup, Record, collapse_bucket, sort_records
from dedup.jobs import IO_DEPTH
from dedup.listing import Listing, walk_listings
from dedup.model import FileProblem
from dedup.options import PathSelection, ScanOptions
from dedup.table import FileTable, PackedDirs, SizeBuckets

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from concurrent.futures import Executor
    from typing import Any

    from dedup.extras import Extras
    from dedup.walk import Scandir, WalkCounters


class Sizing:
    """`scan` and `candidates` for the pipeline's run; it provides the attributes declared here."""

    options: ScanOptions
    progress: Callable[[str, int, int], None]
    table: FileTable
    walk_counts: WalkCounters
    procs: int
    io_threads: int
    io_pool: Executor | None
    extras: Extras | None
    links: dict[tuple[int, int], list[Record]]
    files: int
    filtered: int
    distinct_files: int
    bytes_scanned: int
    problem: Callable[[FileProblem], None]
    records: Callable[[Any], list[Record]]

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
            from dedup.subtrees import COLD_PROCS, walk_forked

            listings = walk_forked(
                paths, procs=self.procs, one_file_system=options.one_file_system,
                enters_dir=enters_dir, counters=self.walk_counts, lowest=lowest,
                highest=highest, select=select,
                cold_procs=min(self.io_threads, COLD_PROCS))
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
        # A forked walk's problems, reported once it ends, in tree order: its tasks come in as
        # they are done (dedup.subtrees), and the table holds them in that order.
        deferred: list[tuple[tuple[int, ...], list[tuple[str, str]]]] = []
        for item in listings:
            if item is None:  # the forked walk's listings so far are void (dedup.subtrees)
                table = self.table = FileTable()
                by_size.clear()
                deferred.clear()
                count = filtered = 0
                continue
            if type(item) is PackedDirs:  # a forked walk's task: the table's own columns
                dirs: PackedDirs = item  # type: ignore[assignment]
                if dirs.problems:
                    deferred.append((dirs.tree_key, dirs.problems))
                filtered += dirs.filtered
                first = table.add_packed(dirs)
                count += len(dirs)
                by_size.add_int64s(dirs.sizes, first)
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
        deferred.sort(key=itemgetter(0))
        for _, found in deferred:
            for path, error in found:
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
        # Where the order of a group's files counts (the bytes read: a large group's compare
        # beyond MAX_OPEN files takes its first file as the reference; --verify holds the bytes
        # of the first classes met), they are in `FileEntry.order_key` order, not the table's:
        # that is the order the forked walk's tasks came in, and the sequential walk (one
        # process) lists in another order than the forked one's tree order (before, a group of
        # 70 large files read 12.1 MB with --threads 1 and 6.4 MB with 2).
        verify = self.options.verify
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
                if verify:
                    bucket = self._in_order(bucket)
                small.append(bucket)
            else:
                records = self.records(bucket)
                sort_records(records)
                large.append(records)
        buckets.clear()
        self.distinct_files = self.files - linked
        self.bytes_scanned = sum(table.size) - linked_bytes
        return small, large

    def _in_order(self, group: CandidateGroup | array) -> CandidateGroup | array:
        """Return a group of table indices or records in `FileEntry.order_key` order."""
        if type(group) is not array:
            records = list(group)
            sort_records(records)
            return records
        table = self.table
        file_dir, dir_root, path = table.file_dir, table.dir_root, table.path
        return array("I", sorted(group, key=lambda i: (dir_root[file_dir[i]],
                                                       os.fsencode(path(i)))))
