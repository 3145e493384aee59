"""The scan and the size buckets of a `find_duplicates` run: the walk's listings into the file
table, then the candidates (sizes that repeat, hard links collapsed) split into small and large.

A mixin of dedup.pipeline's run, as dedup.smallfiles, dedup.heads and dedup.largefiles are.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dedup import hashing
from dedup.grouping import CandidateGroup, Record, collapse_bucket
from dedup.jobs import IO_DEPTH
from dedup.listing import Listing, walk_listings
from dedup.model import FileProblem
from dedup.options import PathSelection, ScanOptions
from dedup.table import FileTable, PackedDirs, SizeBuckets
from dedup.walk import Scandir, WalkCounters

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from dedup.extras import Extras


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
    segments: tuple[list[tuple[int, ...]], array]  # the forked walk's tasks: keys, first rows
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
        # A forked walk's problems (reported once it ends, in tree order) and its tasks' places
        # in the table: they come in as they are done, not in tree order (dedup.subtrees).
        deferred: list[tuple[tuple[int, ...], list[tuple[str, str]]]] = []
        self.segments = segments = ([], array("I"))
        for item in listings:
            if item is None:  # the forked walk's listings so far are void (dedup.subtrees)
                table = self.table = FileTable()
                by_size.clear()
                deferred.clear()
                self.segments = segments = ([], array("I"))
                count = filtered = 0
                continue
            if type(item) is PackedDirs:  # a forked walk's task: the table's own columns
                dirs: PackedDirs = item  # type: ignore[assignment]
                if dirs.problems:
                    deferred.append((dirs.tree_key, dirs.problems))
                filtered += dirs.filtered
                first = table.add_packed(dirs)
                if len(dirs):
                    segments[0].append(dirs.tree_key)
                    segments[1].append(first)
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
        deferred.sort(key=_KEY)
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
        # Where the order of a group's files may count (the reference of a large group's
        # compare beyond MAX_OPEN files, which class bytes --verify holds), they are put in the
        # sequential walk's order: the forked walk's tasks were added as they came.
        walked = self._walk_order()
        verify = self.options.verify
        for size in reversed(buckets.repeated):
            bucket: CandidateGroup | array = by_size[size]  # type: ignore[assignment]
            if walked is not None and (verify or size > limit):
                bucket = array("I", sorted(bucket, key=walked))
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
        self.segments = ([], array("I"))
        self.distinct_files = self.files - linked
        self.bytes_scanned = sum(table.size) - linked_bytes
        return small, large

    def _walk_order(self) -> Callable[[int], tuple[int, int]] | None:
        """Return a key putting table rows in the sequential walk's order, or None when the
        table is in that order (the forked walk's tasks came in tree order, or no forked walk)."""
        keys, firsts = self.segments
        if all(a < b for a, b in zip(keys, keys[1:])):
            return None
        rank = [0] * len(keys)
        for r, k in enumerate(sorted(range(len(keys)), key=keys.__getitem__)):
            rank[k] = r

        def walked(i: int) -> tuple[int, int]:
            # Rows of one task are in walk order; tasks by their tree keys' rank.
            return rank[bisect_right(firsts, i) - 1], i

        return walked


def _KEY(item: tuple) -> tuple:
    return item[0]
