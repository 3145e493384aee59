"""The small-file stage of a scan: files of at most `WHOLE_LIMIT` bytes read whole, once, and split
by digest (or by their bytes with --verify), a mixin of the pipeline's run (dedup.pipeline).

A file the page cache holds is read in the calling thread (one `preadv(RWF_NOWAIT)`); one it does
not is handed to the I/O pool with the next files of its group, opened and read there. With more
than one process, `_compare_small` shares whole groups out to forked processes (dedup.processes).
"""

from __future__ import annotations

import os
from array import array
from collections import deque
from operator import attrgetter

from dedup import hashing
from dedup.grouping import CandidateGroup, expand_groups
from dedup.jobs import BATCH_FILES, IO_DEPTH, Inline, no_progress
from dedup.model import DuplicateGroup, FileProblem
from dedup.processes import MAX_TASKS
from dedup.walk import describe_os_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    from dedup.extras import Extras
    from dedup.hashing import Opener
    from dedup.options import ScanOptions
    from dedup.table import FileTable

# Processes comparing small files at most (each adds its copy-on-write pages and its I/O pool).
MAX_PROCS = 4
# Files per task of the forked stage at least: a task costs a pipe read and a marshalled result.
TASK_FILES = 256
# Tasks of the forked stage: each about the files not yet in a task over this many per process
# (guided self-scheduling: big tasks first, small ones last; see `_guided`).
TASK_SHARE = 4

# Files scanned from which the forked stage takes the other processes' results only once the
# scan's table (34 bytes a file and names: 17 MiB here) is freed, not as they come in.
LATE_FILES = 500_000

# --verify: bytes of small files held per size bucket to compare later members in memory. A
# class whose first member's bytes are not held (budget spent) is compared by a lockstep reread.
VERIFY_HOLD = 16 * 1024 * 1024


class SmallFiles:
    """`_split_small` for the pipeline's run; it provides the attributes declared here."""

    options: ScanOptions
    opener: Opener
    io_pool: Executor | None
    io_threads: int
    table: FileTable
    bytes_read: int
    cold: bool | None
    progress: Callable[[str, int, int], None]
    problem: Callable[[FileProblem], None]
    records: Callable[[CandidateGroup | array], CandidateGroup]
    size_of: Callable[[CandidateGroup | array], int]
    _verify: Callable[..., list[CandidateGroup]]
    _split_heads: Callable[..., tuple[list, list]]
    procs: int
    files: int  # regular files scanned
    extras: Extras | None  # --dirs, --similar: the table is kept after the scan (release_table)
    ordered: bool  # are the groups made so far in report order (see grouping.expand_groups)
    problems: list[FileProblem]
    links: dict[tuple[int, int], list]
    start_pool: Callable[[], None]
    _warm_left: Callable[[], bool]
    warm_misses: int
    release_table: Callable[[], None]
    stop_io: Callable[[], None]

    def _compare_small(self, groups: list[CandidateGroup | array],
                       large: list[CandidateGroup] | None = None) -> list[CandidateGroup | array]:
        """Split groups of small files by content (heads, then whole reads: `_split_heads`,
        `_split_small`). With more than one process (`procs`), consecutive groups are cut into
        tasks that forked processes share (dedup.processes.take_in_processes), each with its own
        I/O pool; each task's classes are made the report's groups (`DuplicateGroup`) here as
        they come in (see `LATE_FILES`), and ordered at the end (problems logged in task
        order), so the outcome is the one of a single process.

        *large* (groups of records of larger files, when nothing but the byte compare decides
        them): with processes, their stage runs as one more task, the first, beside the small
        files' (`_compare_large_warm`); their classes join the result and *large* is emptied,
        unless their first bytes are not in the page cache (then they are left to the caller)."""
        if self.procs <= 1 or self.opener is not hashing._DEFAULT_OPENER or len(groups) < 2:
            self.start_pool()
            proven, rest = self._split_heads(groups)
            return proven + self._split_small(rest)
        from dedup.processes import take_in_processes

        # On the pyenv tree the large files' stage took 0.1 s after the small files', with
        # one core idle; as a task it overlaps them.
        beside = list(large) if large else []
        first = 1 if beside else 0
        files = sum(len(g) for g in groups)
        tasks = _guided(groups, files, self.procs)
        del groups
        threads = self.io_threads
        progress = self.progress
        parent = os.getpid()
        self.stop_io()  # threads do not survive a fork: each process starts its own

        def setup() -> None:
            self.io_threads = -(-threads // self.procs)
            self.start_pool()
            if os.getpid() != parent:
                self.progress = no_progress

        def work(number: int) -> tuple[list | None, list, int, bool | None]:
            problems, before = len(self.problems), self.bytes_read
            compared: list[CandidateGroup | array] | None
            if number < first:
                compared = self._compare_large_warm(beside)  # type: ignore[assignment]
            else:
                proven, rest = self._split_heads(tasks[number - first])
                tasks[number - first] = []  # this process's copy: freed as it goes
                compared = proven + self._split_small(rest)
            # Each class leaves as the report's group, packed (records built, hard links added
            # and sorted here, in parallel), in `DuplicateGroup.packed_order`: see the sort below.
            classes = None if compared is None else sorted(map(self._packed, compared),
                                                           key=_packed_order)
            found = [(p.path, p.error) for p in self.problems[problems:]]
            del self.problems[problems:]
            nbytes, self.bytes_read = self.bytes_read - before, before
            return classes, found, nbytes, self.cold

        # Problems are collected, not logged, while tasks run (a child must not log: its
        # handlers' locks may be the parent's); they are logged below, in task order.
        self.problem = self.problems.append  # type: ignore[method-assign]
        out: list[DuplicateGroup] = []
        found_in: dict[int, list] = {}
        colds = set()
        nbytes_in = [0]
        packed = DuplicateGroup.packed
        uncached = [False]

        def take(number: int, result: tuple[list | None, list, int, bool | None]) -> None:
            # Between this process's tasks: each task's classes become the report's groups
            # here while the other processes still work (after the last task, unmarshalling
            # and building 17,000 groups took 25 ms of the pyenv run with one core idle).
            classes, found, nbytes, cold = result
            if classes is None:  # the large files were not cached: the caller's
                uncached[0] = True
                return
            out.extend([packed(size, paths, numbers, n) for size, paths, numbers, n in classes])
            if found:
                found_in[number] = found
            nbytes_in[0] += nbytes
            colds.add(cold)

        # A big scan takes the other processes' results once the table is freed (till then in
        # memory files, outside this RSS): at 1,000,000 files, peak RSS 135 -> 105 MiB. A small
        # one keeps the overlap: the pyenv run (116,000 files) took 1.03x the wall without it.
        late = self.release_table if self.files >= LATE_FILES and self.extras is None else None
        try:
            take_in_processes(first + len(tasks), work, self.procs, take, setup, late)
        finally:
            del self.problem
            self.stop_io()
            self.io_threads, self.progress = threads, progress
        self.release_table()  # the columns of the scan: what is left (large groups) is records
        if uncached[0]:
            beside.clear()
        for number in sorted(found_in):
            for path, error in found_in[number]:
                self.problem(FileProblem(path, error))
        self.bytes_read += nbytes_in[0]
        self.cold = True if True in colds else False if False in colds else None
        if beside and large is not None:
            large.clear()  # compared in a task above
        # Each task's groups come in order and hold sizes no other task has: a stable sort by
        # size alone orders them all. (Keys made here: 0.03 s of the pyenv run; the workers'
        # keys held here with their pairs: 30 MB of the 1,000,000-file run's peak RSS.)
        out.sort(key=_SIZE, reverse=True)
        self.ordered = True
        progress("partial", files, files)
        return out

    def _packed(self, group: CandidateGroup | array) -> tuple[int, str, bytes, int]:
        """Return a class as what `DuplicateGroup.packed` takes: size, paths, numbers, files."""
        if type(group) is array:  # table indices: no hard links (see _Run.candidates)
            size = self.table.size[group[0]]
            paths, numbers = self.table.packed_group(group, size)
        else:
            size, paths, numbers = expand_groups([group], self.links)[0].pack()
        return size, paths, numbers, len(group)

    def _split_small(self, groups: list[CandidateGroup | array]) -> list[CandidateGroup | array]:
        """Split groups of files read whole, once, by content digest.

        A file the page cache holds is read in this thread; one it does not is handed (open) to
        the I/O pool, and its group is finished once its reads are in, groups in order, with at
        most io_threads * IO_DEPTH reads (open descriptors) in flight. With --verify the bytes
        themselves decide: each later member is compared with the bytes of its class's first
        member, held in memory (up to `VERIFY_HOLD` per group), not reread.
        """
        verify = self.options.verify
        digest = hashing.ONE_SHOT[self.options.hash_name]
        opener = self.opener
        pool = self.io_pool
        read: Callable[[str, int], bytes]
        if opener is not hashing._DEFAULT_OPENER:
            pool = None

            def read(path: str, size: int) -> bytes:
                return hashing.read_whole(path, size, opener)
        else:
            read = hashing.read_small  # one call less per file than read_whole
        read_cached = hashing.read_small_cached
        read_fd = hashing.read_fd_whole

        read_small = hashing.read_small

        read_rest = hashing.read_fd_rest

        def job(fd: int, paths: list[str], size: int, have: bytearray | None = None) -> list:
            # A file found not cached (its descriptor, and the part the page cache had) and the
            # next ones of its group, read here in an I/O thread: (digest, bytes or None) or a
            # problem each.
            out: list = []
            for path in paths:
                try:
                    if fd < 0:
                        data = read_small(path, size)
                    else:
                        data = read_fd(fd, size) if have is None else read_rest(fd, size, have)
                except OSError as exc:
                    out.append(FileProblem(path, describe_os_error(exc)))
                else:
                    out.append((digest(data), data if verify else None))
                fd = -1
            return out

        total = sum(len(g) for g in groups)
        window = self.io_threads * IO_DEPTH
        done = reported = 0
        result: list[CandidateGroup] = []
        # Groups read but not finished, and the pool's reads in submission order (group number,
        # its slots, position): at most *window* in flight, so as many open descriptors.
        pending: deque[tuple[int, CandidateGroup, list]] = deque()
        flying: deque[tuple[int, list, int]] = deque()

        def land(item: tuple[int, list, int]) -> None:
            _, slots, pos = item
            slots[pos] = slots[pos].result()  # a list: one result per file of the job

        table_path = self.table.path
        for number, group in enumerate(groups):
            # A group of table indices stays one: only a path is built to read each file (a
            # record per candidate cost 15 MB at the peak on a 113,000-file tree).
            if type(group) is array:
                size = self.table.size[group[0]]
                paths = [table_path(i) for i in group]
            else:
                size = group[0][1]
                paths = [record[0] for record in group]
            slots: list = []
            k = 0
            while k < len(paths):
                path = paths[k]
                k += 1
                try:
                    if pool is None:
                        data = read(path, size)
                    else:
                        got = read_cached(path, size)
                        if self.cold is None:
                            self.cold = False
                        have = None
                        if type(got) is tuple:  # partly cached: its first part is read
                            got, have = got
                        if type(got) is int and self._warm_left():
                            # A warm page cache missing a few files: read here, each a miss of
                            # the budget the head stage keeps (dedup.heads), not by the I/O
                            # pool, whose start (threads; concurrent.futures and logging
                            # imported) cost a process about 10 ms for one file.
                            self.cold = True
                            self.warm_misses += 1
                            got = read_fd(got, size) if have is None else read_rest(
                                got, size, have)
                        elif type(got) is int:
                            self.cold = True
                            # Not in the page cache: it and the next files of the group go to
                            # the pool as one job, opened there too (cold, a thread hand-off
                            # and an open per file in this thread kept the readers waiting).
                            batch, k = paths[k - 1 : k - 1 + BATCH_FILES], k - 1 + BATCH_FILES
                            try:
                                slots.append(pool.submit(job, got, batch, size, have))
                            except BaseException:
                                os.close(got)
                                raise
                            flying.append((number, slots, len(slots) - 1))
                            if len(flying) >= window:
                                land(flying.popleft())
                            continue
                        data = got  # type: ignore[assignment]
                except OSError as exc:
                    slots.append(FileProblem(path, describe_os_error(exc)))
                    continue
                slots.append((digest(data), data if verify else None))
            pending.append((number, group, slots))
            while pending and (not flying or flying[0][0] > pending[0][0]
                               or len(pending) > window):
                first, members, slots = pending.popleft()
                while flying and flying[0][0] <= first:
                    land(flying.popleft())
                self._finish_small(members, size if first == number else None, slots, result)
                done += len(members)
                if done - reported >= 1024 or done == total:
                    reported = done
                    self.progress("partial", done, total)
        while flying:
            land(flying.popleft())
        for _, members, slots in pending:
            self._finish_small(members, None, slots, result)
            done += len(members)
        self.progress("partial", done, total)
        return result

    def _finish_small(self, members: CandidateGroup | array, size: int | None, slots: list,
                      result: list) -> None:
        """Split one group (table indices or records) whose reads are all in: (digest, bytes or
        None) or a problem each. The classes keep the group's form."""
        verify = self.options.verify
        if size is None:
            size = self.size_of(members)
        classes: dict[bytes, list] = {}
        held: dict[bytes, bytes] = {}
        recheck: set[bytes] = set()
        budget = VERIFY_HOLD
        if any(type(slot) is list for slot in slots):  # a pool job's results: one per file
            slots = [x for slot in slots for x in (slot if type(slot) is list else (slot,))]
        for record, slot in zip(members, slots, strict=True):
            if type(slot) is not tuple:
                self.problem(slot)
                continue
            key, data = slot
            self.bytes_read += size
            same = classes.get(key)
            if same is None:
                classes[key] = [record]
                if verify and budget >= size:
                    held[key] = data
                    budget -= size
                continue
            same.append(record)
            if verify and held.get(key) != data:
                recheck.add(key)  # bytes not held, or (never seen) a digest collision
        indices = type(members) is array
        for key, cls in classes.items():
            if len(cls) < 2:
                continue
            if indices:
                cls = array("I", cls)
            if key in recheck:
                result.extend(self._verify(Inline(), [self.records(cls)]))
            else:
                result.append(cls)


_SIZE = attrgetter("size")


def _packed_order(c: tuple[int, str, bytes, int]) -> bytes:
    return DuplicateGroup.packed_order(c[0], c[1], c[2])


def _guided(groups: list, files: int, procs: int) -> list[list]:
    """Cut *groups* (in order) into tasks of shrinking size: each about the files left over
    `TASK_SHARE` * *procs*, at least `TASK_FILES` (and few enough for `MAX_TASKS`). The last
    tasks are small, so the processes finish together: with tasks of a 32nd of the files, one
    process ran alone for the last 10-15 ms of /usr/lib's stage (tasks of about 17 ms)."""
    least = max(TASK_FILES, files // MAX_TASKS + 1)
    tasks: list[list] = [[]]
    count = 0
    left = files
    per_task = max(least, left // (procs * TASK_SHARE))
    for group in groups:
        if count >= per_task:
            tasks.append([])
            left -= count
            count = 0
            per_task = max(least, left // (procs * TASK_SHARE))
        tasks[-1].append(group)
        count += len(group)
    return tasks
