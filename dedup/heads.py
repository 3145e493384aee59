"""The head stage of small files: same-size files over `HEAD_FROM` bytes are split by their first
`HEAD` bytes before any is read whole (a mixin of the pipeline's run, as dedup.smallfiles).

On the pyenv tree (97,140 small candidates) reading every small candidate whole read 257 MiB of
files no other file matched; same-size files that differ mostly differ at once (.pyc headers, ELF
headers, license texts of other lengths), so a 64-byte head rules out most of them for 1/100 of
the bytes (bench/RESULTS.md, dedup-real). While the page cache serves the reads, each group is
finished in this thread, every file opened once, a file it does not hold read there too; once
the groups missing the page cache spend a budget (`WARM_MISSES`, growing with the groups read),
the heads of the other groups are read by the I/O pool, in batches, one open descriptor per job,
and the files sharing a head go to the whole-read stage (dedup.smallfiles). Warm, groups of
files of at most `HEAD_FROM` bytes are finished here too, each file read whole once (without
--verify); a group with a read the page cache cannot serve goes to dedup.smallfiles. Files over
`PREFIX` bytes sharing a head are compared span by span (`spans`: a middle probe over
`PROBE_FROM` bytes, then the rest of the first KiB) and only those still alike read the rest,
from where the spans end (dedup.probes); these classes are finished here. The outcome,
bytes_read included, does not depend on threads or on the page cache.
"""

from __future__ import annotations

import os
from array import array
from itertools import islice

from dedup import cachedreads, hashing
from dedup.grouping import CandidateGroup
from dedup.jobs import BATCH_FILES, IO_DEPTH, bounded_map
from dedup.model import FileProblem
from dedup.probes import (
    HEAD,
    PREFIX,
    middle,
    prefix,
    probe_spans,
    read_rest,
    read_rests,
    rest_from,
    spans,
    split_by_probes,
)
from dedup.walk import describe_os_error

try:  # the warm head loops compiled (setup.py)
    from dedup._cheads import open_heads, read_wholes
except ImportError:  # no C compiler at install: the Python loops
    open_heads = read_wholes = None

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from concurrent.futures import Executor

    from dedup.options import ScanOptions
    from dedup.table import FileTable

# HEAD (from dedup.probes): the bytes read first (one page of the disk either way; the rest is
# rarely needed). Files of at most HEAD_FROM bytes are read whole at once: there a head saves too
# little. /usr/lib's unique candidates read whole beyond the groups' bytes, without and with a
# head first: 513 to 1024 bytes 4.2 -> 0.9 MiB (7,012 files), 257 to 512 bytes 0.7 -> 0.3 MiB
# (2,356 files), 129 to 256 bytes only 0.34 -> 0.22 MiB (2,612 files, 6,622 on the pyenv tree).
HEAD_FROM = 256
KEEP_OPEN = 64  # files of one group open at once in the warm path (a bigger group: two passes)
# Groups of one process whose warm reads may miss the page cache before its other groups go to
# the I/O pool's path. A page cache can be warm but for a few files: the bench machine's kernel
# pages out file pages it finds idle (DAMON), and a warm /usr/lib run missed in 3 runs of 16; at
# the first miss the rest of the run went the cold way (heads from the pool, each file opened
# again for its spans and rest). A missed file is read where it is (a group of files of at most
# HEAD_FROM bytes goes to dedup.smallfiles, as before). The budget grows by one every
# `MISS_EVERY` groups read warm: misses spread over the run (a page cache missing 0.2% of
# /usr/lib's files) do not end the warm path. The price on a page cache cold without a read-ahead
# (fewer than half of prefetch's probes missed): each process reads 16 to 32 groups blocking,
# one file at a time, before the pool takes over; with a read-ahead (a cold page cache) the
# budget is 0 (dedup.pipeline). A miss still marks the run's page cache cold (`self.cold`): the
# large files' stage after it uses the I/O pool's threads, as on a cold page cache.
WARM_MISSES = 16
MISS_EVERY = 8


class Heads:
    """`_split_heads` for the pipeline's run; it provides the attributes declared here."""

    io_pool: Executor | None
    opener: hashing.Opener
    io_threads: int
    table: FileTable
    bytes_read: int
    cold: bool | None
    warm_misses = 0  # groups whose warm reads missed the page cache, in this process
    warm_groups = 0  # groups read in the warm path, in this process
    # Groups whose warm reads may miss (0 while a read-ahead runs: the page cache is known cold,
    # and the first miss sends the groups after it the cold way, as the read-ahead wants).
    miss_budget = WARM_MISSES
    options: ScanOptions
    problem: Callable[[FileProblem], None]
    size_of: Callable[[CandidateGroup | array], int]
    _finish_small: Callable[..., None]

    def _warm_left(self) -> bool:
        """Whether groups are still read in the warm path (the budget of misses not spent)."""
        budget = self.miss_budget
        return self.warm_misses < (budget + self.warm_groups // MISS_EVERY if budget else 1)

    def _warm_after(self, missed: bool) -> bool:
        """Count a group read in the warm path (*missed*: a read of it missed the page cache);
        return whether the next groups are still read that way."""
        self.warm_groups += 1
        if missed:
            self.warm_misses += 1
        return self._warm_left()

    def _split_heads(self, groups: list[CandidateGroup | array]
                     ) -> tuple[list[CandidateGroup | array], list[CandidateGroup | array]]:
        """Split groups of files over `HEAD_FROM` bytes by their first `HEAD` bytes (and, over
        `PREFIX`, by their `spans`, then their rests: dedup.probes); return (classes already
        proven, groups still to read whole). With a warm page cache a group is finished here: of
        at most `HEAD_FROM` bytes (without --verify), each file read whole once; of at most
        `KEEP_OPEN` files, each opened once, its head read, and only the files whose head another
        shares read whole from the same descriptor. Otherwise groups of smaller files pass as they
        are."""
        if self.opener is not hashing._DEFAULT_OPENER:
            return [], groups  # a test's opener sees every read: the whole reads alone, as before
        size_of = self.size_of
        table_paths = self.table.paths

        def paths_of(group: CandidateGroup | array) -> list[str]:
            if type(group) is array:
                return table_paths(group)
            return [record[0] for record in group]

        rest: list[CandidateGroup | array] = []
        done: list[CandidateGroup | array] = []
        later: list[CandidateGroup | array] = []
        warm = self._warm_left()
        # Warm, without --verify, groups of files too small for a head are finished here too,
        # each file read whole into one buffer (the small corpus: 62,000 of 94,000 candidates).
        whole = not self.options.verify
        for group in groups:
            if size_of(group) <= HEAD_FROM:
                if warm and whole:
                    # A miss hands this group to dedup.smallfiles (a --verify run's small groups
                    # always go there), and spends the budget of misses.
                    cached = self._finish_whole_warm(group, paths_of(group), done)
                    warm = self._warm_after(not cached)
                    if cached:
                        continue
                rest.append(group)
            elif warm and len(group) <= KEEP_OPEN:
                if self._finish_warm(group, paths_of(group), done, size_of(group)):
                    self.warm_groups += 1  # no miss: still warm (`_warm_after`)
                else:
                    warm = self._warm_after(True)
            else:
                later.append(group)
        if not later:
            return done, rest
        heads: Iterable[bytes | FileProblem]
        if self.io_pool is not None and not warm:  # not cached: heads from the I/O pool
            # Paths are built batch by batch, as jobs are submitted, not all at once.
            every = (p for g in later for p in paths_of(g))
            jobs = iter(lambda: list(islice(every, BATCH_FILES)), [])
            heads = (h for batch in bounded_map(self.io_pool, cachedreads.heads_job, jobs,
                                                self.io_threads * IO_DEPTH) for h in batch)
        else:
            heads = (h for g in later for h in cachedreads.heads_job(paths_of(g)))
        heads = iter(heads)
        staged: list[CandidateGroup | array] = []  # classes over PREFIX: probed (dedup.probes)
        for group in later:
            classes: dict[bytes, list] = {}
            for member in group:
                head = next(heads)
                if type(head) is not bytes:
                    self.problem(head)  # type: ignore[arg-type]
                    continue
                self.bytes_read += HEAD
                same = classes.get(head)
                if same is None:
                    classes[head] = [member]
                else:
                    same.append(member)
            for cls in classes.values():
                if len(cls) > 1:
                    cls = array("I", cls) if type(group) is array else cls
                    (staged if size_of(group) > PREFIX else rest).append(cls)
        if not staged:
            return done, rest
        # What _finish_warm does through the descriptors it holds, stage by stage for all the
        # classes: middles (where `spans` has one), prefixes, then the rests, digested (or held,
        # with --verify) and split by `_finish_small`.
        pool = self.io_pool if not warm else None
        window = self.io_threads * IO_DEPTH
        digest = hashing.ONE_SHOT[self.options.hash_name]
        for at in (middle, prefix):  # each class: the spans of `spans` of its size
            now = [c for c in staged if at in spans(size_of(c))]
            if now:
                splits, nbytes = split_by_probes(now, [paths_of(c) for c in now],
                                                 [size_of(c) for c in now], pool, window,
                                                 cachedreads.open_file, self.problem, at)
                self.bytes_read += nbytes
                staged = [c for c in staged if at not in spans(size_of(c))] + [
                    c for cs in splits for c in cs]
        rests = read_rests(staged, [paths_of(c) for c in staged], [size_of(c) for c in staged],
                           pool, window, cachedreads.open_file, digest, self.options.verify)
        for cls, slots in zip(staged, rests, strict=True):
            self._finish_small(cls, size_of(cls) - rest_from(size_of(cls)), slots, done)
        return done, rest

    def _finish_warm(self, group: CandidateGroup | array, paths: list[str],
                     done: list[CandidateGroup | array], size: int) -> bool:
        """Finish one group of files of *size* bytes in this thread (heads, then whole reads of
        the files sharing one; a read the page cache cannot serve is made blocking); return
        False when one was not served by the page cache (a miss: `_warm_after` decides whether
        the next groups stay here)."""
        digest = hashing.ONE_SHOT[self.options.hash_name]
        verify = self.options.verify
        # Lean on purpose: this runs once per small candidate (pyenv tree: 70,000 files, most of
        # the small stage). A shared buffer for the whole reads (a bytearray per file was zeroed
        # first), the classes built here, not in a second pass over slots (_finish_small). Most
        # groups share no head: what only the files sharing one need (a buffer, the spans, the
        # classes) is made for them alone.
        fds: list[int] = []
        preadv, nowait = cachedreads.preadv, 0 if cachedreads.refused[0] else hashing._RWF_NOWAIT
        heads_of = cachedreads.chosen(open_heads, cachedreads.open_heads_python)
        try:
            was = nowait
            sharing, failures, missed, nowait = heads_of(paths, hashing._OPEN_FLAGS, nowait,
                                                         HEAD, fds)  # fds: closed below
            if was and not nowait:
                cachedreads.refused[0] = True  # the file system refuses RWF_NOWAIT
            cached = not missed
            failed = [FileProblem(paths[k], text) for k, text in failures]
            read = HEAD * (len(paths) - len(failed))
            classes: dict[bytes, list[int]] = {}
            held: list[list[tuple[int, tuple[bytes, bytes]]]] = []  # --verify: bytes decide
            start = 0
            view = hashing._buffer(size + 1) if sharing else None
            for span in spans(size) if sharing else ():  # middle, prefix... (dedup.probes)
                if not sharing:
                    break
                sharing, probed, nowait, hit = probe_spans(fds, paths, sharing, span(size),
                                                           nowait, failed, preadv,
                                                           cachedreads.nowait_refused, view)
                read += probed
                cached = cached and hit
            # The files still sharing all that was read: whole, or (over PREFIX) the rest.
            if sharing:
                start = rest_from(size)
            for number, ks in enumerate(sharing):
                if start:
                    tag = number.to_bytes(4, "little")  # digests of rests: within one prefix
                    if verify:
                        held.append([])
                for k in ks:
                    try:
                        if start:
                            data = read_rest(fds[k], size, start, view)
                        else:
                            data = cachedreads.read_whole(fds[k], size, view)
                    except OSError as exc:
                        failed.append(FileProblem(paths[k], describe_os_error(exc)))
                        continue
                    if verify:
                        if not start and not held:
                            held.append([])
                        held[-1].append((k, (digest(data), bytes(data))))
                        continue
                    read += size - start
                    found = digest(data)
                    classes.setdefault(tag + found if start else found, []).append(k)
        finally:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
        self.bytes_read += read
        for part in held:  # counted there: the whole files, or each prefix's rests
            if part:
                members = [group[k] for k, _ in sorted(part)]
                self._finish_small(array("I", members) if type(group) is array else members,
                                   size - start, [slot for _, slot in sorted(part)], done)
        if classes or failed:
            self._keep_classes(group, classes.values(), failed, done)
        if not cached:
            self.cold = True
        elif self.cold is None:
            self.cold = False
        return cached

    def _finish_whole_warm(self, group: CandidateGroup | array, paths: list[str],
                           done: list[CandidateGroup | array]) -> bool:
        """Finish one group of files of at most `HEAD_FROM` bytes in this thread, each opened,
        read whole (one byte past the end too: growth) and closed. Return False, the group left
        untouched (nothing counted or reported), at the first read the page cache could not
        serve: that group goes to dedup.smallfiles (`_split_small`), and `_warm_after` decides
        whether the next groups stay here."""
        size = self.size_of(group)
        nowait = 0 if cachedreads.refused[0] else hashing._RWF_NOWAIT
        wholes_of = cachedreads.chosen(read_wholes, cachedreads.read_wholes_python)
        got = wholes_of(paths, size, hashing._OPEN_FLAGS, nowait)
        if got is None:
            self.cold = True
            return False
        classes, failures, after = got
        if nowait and not after:
            cachedreads.refused[0] = True  # the file system refuses RWF_NOWAIT
        failed = [FileProblem(paths[k], text) for k, text in failures]
        self.bytes_read += size * (len(paths) - len(failed))
        self._keep_classes(group, classes, failed, done)
        if self.cold is None:
            self.cold = False
        return True

    def _keep_classes(self, group: CandidateGroup | array, classes: Iterable[list[int]],
                      failed: list[FileProblem], done: list[CandidateGroup | array]) -> None:
        """Add each class of two or more positions in *group* to *done* (as *group*'s kind of
        group); report *failed*."""
        indices = type(group) is array
        for ks in classes:
            if len(ks) > 1:
                done.append(array("I", [group[k] for k in ks]) if indices
                            else [group[k] for k in ks])
        for item in failed:
            self.problem(item)
