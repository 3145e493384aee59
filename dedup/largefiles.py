"""The digest stages of a scan, a mixin of the pipeline's run (dedup.pipeline): both-ends partial
keys and full digests (with --cache, or groups of large files), and the byte-for-byte compare of
whole groups in lockstep (--verify, and large files by default).
"""

from __future__ import annotations

from array import array

from dedup import hashing
from dedup.grouping import CandidateGroup, Record, split_by
from dedup.hashing import full_digest, partial_digest
from dedup.jobs import BATCH_FILES, IO_DEPTH, Inline, batches, bounded_map, no_progress
from dedup.model import FileEntry, FileProblem
from dedup.verify import Partition, partition_identical
from dedup.walk import describe_os_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from concurrent.futures import Executor

    from dedup.hashcache import DigestCache
    from dedup.hashing import Opener
    from dedup.options import ScanOptions


class LargeFiles:
    """Digest and lockstep stages for the pipeline's run; it provides the attributes declared here."""

    options: ScanOptions
    opener: Opener
    cache: DigestCache | None
    now_ns: int
    io_threads: int
    bytes_read: int
    progress: Callable[[str, int, int], None]
    problem: Callable[[FileProblem], None]
    records: Callable[[CandidateGroup | array], CandidateGroup]

    def _split_by_digest(self, pool: Executor, groups: list[CandidateGroup], stage: str) -> list[CandidateGroup]:
        files = [e for g in groups for e in g]
        total = len(files) if stage == "partial" else sum(e[1] for e in files)
        keys: dict[int, bytes] = {}  # by id(entry): each representative is one object
        done = 0
        digest = self._partial_job if stage == "partial" else self._full_job
        for batch_results in bounded_map(pool, lambda batch: [digest(e) for e in batch],
                                         batches(files, BATCH_FILES), 2 * self.options.threads):
            for entry, outcome, nbytes in batch_results:
                self.bytes_read += nbytes
                if isinstance(outcome, FileProblem):
                    self.problem(outcome)
                else:
                    keys[id(entry)] = outcome
                done += 1 if stage == "partial" else entry[1]
            self.progress(stage, done, total)
        return split_by(groups, lambda e: keys.get(id(e)))

    def _split_partial(self, groups: list[CandidateGroup | array],
                       pool: Executor | None = None) -> list[CandidateGroup]:
        # Group by group: only one group's keys are alive at a time (-15 MB peak on the
        # 100,000-file bench corpus compared with keying every file first). With a *pool* (large
        # files: two seeks each, slow on a cold disk) whole groups are keyed by its threads.
        total = sum(len(g) for g in groups)
        done = reported = 0
        result: list[CandidateGroup] = []
        job = self._partial_job

        def key_group(group: CandidateGroup | array) -> tuple[CandidateGroup, list]:
            records = self.records(group)
            return records, [job(entry) for entry in records]

        if pool is None:
            outcomes: Iterable[tuple[CandidateGroup, list]] = map(key_group, groups)
        else:
            outcomes = bounded_map(pool, key_group, groups, self.io_threads * IO_DEPTH)
        for records, keyed in outcomes:
            keys: dict[int, bytes] = {}
            for entry, outcome, nbytes in keyed:
                self.bytes_read += nbytes
                if isinstance(outcome, FileProblem):
                    self.problem(outcome)
                else:
                    keys[id(entry)] = outcome
            result.extend(split_by([records], lambda e, keys=keys: keys.get(id(e))))
            done += len(records)
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

    def _compare_large_warm(self, groups: list[CandidateGroup]) -> list[CandidateGroup] | None:
        """Split groups of large files here, without threads (both-ends keys, then the lockstep
        compare), when the page cache holds their first bytes; else return None."""
        from dedup.prefetch import is_cold, spread

        if is_cold(groups[k][0][0] for k in spread(len(groups))):
            return None
        progress, self.progress = self.progress, no_progress  # the small files' count is shown
        try:
            return self._verify(Inline(), self._split_partial(groups))
        finally:
            self.progress = progress

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
