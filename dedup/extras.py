"""Wire `--dirs` and `--similar` into a scan: what the walk keeps, what is chunked, the results.

Both ride on the normal run: the walk keeps every directory's listing (`DirTree`, no second
walk), and with --similar the large files are cut into chunks once, which also decides which of
them are identical (dedup.similar.Chunker).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dedup.dirs import DirTree, duplicate_dirs
from dedup.grouping import CandidateGroup
from dedup.hashcache import DigestCache, HashCache
from dedup.hashing import WHOLE_LIMIT
from dedup.model import FileProblem, Report
from dedup.options import PathSelection, ScanOptions
from dedup.report import quote_path
from dedup.warn import warning

if TYPE_CHECKING:
    from concurrent.futures import Executor



def _kept(path: str) -> bool:
    return True


class Extras:
    """What --dirs and --similar ask of a scan: pass to `find_duplicates`, then `finish` its report."""

    def __init__(self, paths: Sequence[str], options: ScanOptions, *, dirs: bool, similar: bool,
                 min_size: int = 1024 * 1024, threshold: int = 50) -> None:
        self.options = options
        self.dirs, self.similar = dirs, similar
        self.min_size, self.threshold = min_size, threshold
        self.selection = PathSelection(options)
        self.tree = DirTree(paths)
        # With --dirs the walk keeps every entry, except what --exclude leaves out (absent).
        self.others: Callable[[str], bool] | None = None
        if dirs:
            self.others = self.selection.enters_dir if options.exclude else _kept
        self.cache: DigestCache | None = None
        self.chunker = None
        # Identical chunk lists prove identical content as a full digest of the default hash
        # does, so large files --similar chunks are grouped by them: read once, not twice.
        # Another --hash was asked for its strength: then the files are compared as usual too.
        self.chunk_min: int | None = None
        if similar:
            from dedup.similar import Chunker  # lazy: only --similar needs pyfastcdc

            if options.cache_path is not None:
                self.cache = HashCache(options.cache_path)
            self.chunker = Chunker(self.cache)
            if options.hash_name == "mmh3":
                self.chunk_min = max(min_size, WHOLE_LIMIT + 1)
        self.counted = 0  # bytes chunked during the scan (its stats count them already)
        self.pool: Executor | None = None

    def split_large(self, groups: list[CandidateGroup], problem: Callable[[FileProblem], None]
                    ) -> tuple[list[CandidateGroup], list[CandidateGroup], int]:
        """Return (groups left to compare as usual, groups split by chunk lists, bytes read)."""
        if self.chunker is None or self.chunk_min is None:
            return groups, [], 0
        limit = self.chunk_min
        mine = [g for g in groups if g[0][1] >= limit]
        if not mine:
            return groups, [], 0
        before = self.chunker.bytes_read
        classes = self.chunker.split(mine, problem, self._pool())
        read = self.chunker.bytes_read - before
        self.counted += read
        return [g for g in groups if g[0][1] < limit], classes, read

    def finish(self, report: Report) -> Report:
        """Return *report* with `dirs` (duplicate directories) and/or `similar` (shared regions)."""
        changes: dict[str, object] = {}
        if self.dirs:
            changes["dirs"] = tuple(duplicate_dirs(
                self.tree, report.groups, include_empty=self.options.include_empty,
                enters_dir=self.selection.enters_dir if self.options.exclude else None))
        if self.similar:
            from dedup.similar import find_similar

            table = self.tree.table
            candidates = [] if table is None else [
                table.record(i)[:5] for i, size in enumerate(table.size) if size >= self.min_size]
            pairs, problems = find_similar(candidates, report.groups, self.options,
                                           threshold=self.threshold, chunker=self.chunker,
                                           pool=self._pool())
            changes["similar"] = tuple(pairs)
            read = self.chunker.bytes_read if self.chunker is not None else 0
            stats = report.stats.replace(bytes_read=report.stats.bytes_read + read
                                         - self.counted)
            if problems:
                for path, error in problems:
                    warning("dedup.similar", "%s: %s", quote_path(path), error)
                found = [FileProblem(path, error) for path, error in problems]
                changes["problems"] = report.problems + tuple(found)
                stats = stats.replace(errors=stats.errors + len(found))
            changes["stats"] = stats
        return report.replace(**changes)  # type: ignore[return-value]

    def _pool(self) -> Executor | None:
        # Readers of the files to chunk, as many as read large files in the scan (--threads).
        if self.pool is None and self.options.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.options.threads, thread_name_prefix="dedup-cdc")
        return self.pool

    def close(self) -> None:
        """Stop the chunking threads; close the --cache file if this object opened it."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        if isinstance(self.cache, HashCache):
            self.cache.close()
        self.cache = None

    def __enter__(self) -> Extras:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
