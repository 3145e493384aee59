"""Forked worker processes (issue 18): same results as one process, in order, whatever process ran
a task; a dead worker's tasks are run by the parent; a file changed before a forked read is an
error entry. Small tasks (TASK_FILES = 1) and four processes make every test tree fork."""

from __future__ import annotations

import os
import time

import pytest

from dedup import (
    ScanOptions,
    cachedreads,
    find_duplicates,
    hashing,
    largefiles,
    pipeline,
    prefetch,
    processes,
    smallfiles,
    subtrees,
    tasktree,
)
from dedup.listing import walk_listings
from dedup.model import FileProblem
from dedup.report import to_json
from dedup.table import FileTable, PackedDirs
from dedup.walk import WalkCounters
from fixtures.trees import build_tree
from tests.dedup.test_parallel_io import _cold, _hostile_spec

pytestmark = pytest.mark.skipif(not processes.can_fork(), reason="no fork here (or threads)")


@pytest.fixture
def forking(monkeypatch):
    """Four processes whatever the machine, one file per task, a few entries per walk task:
    every tree is shared out, and walked in several rounds."""
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 4)
    monkeypatch.setattr(smallfiles, "TASK_FILES", 1)
    monkeypatch.setattr(subtrees, "TASKS_PER_PROC", 1)
    monkeypatch.setattr(subtrees, "TASK_ENTRIES", 3)
    monkeypatch.setattr(subtrees, "LOOK_EVERY", 1)  # a task here may be cut after any directory


def _json(report) -> str:
    return to_json(report).replace(f'"elapsed_s": {report.stats.elapsed_s}', '"elapsed_s": 0')


def _pid_task(number: int) -> tuple[int, int]:
    time.sleep(0.001)  # long enough that the children get tasks too
    return number * number, os.getpid()


def _tree_task(task, _stop=None):
    # A task (name, depth) gives three subtasks until depth 3: 1 + 3 + 9 + 27 tasks per top one.
    name, depth = task
    time.sleep(0.0005)  # long enough that the workers get tasks too
    subtasks = [[f"{name}.{k}", depth + 1] for k in range(3)] if depth < 3 else []
    return [name, os.getpid()], depth, subtasks


def _in_tree_order(pairs) -> list:
    pairs = list(pairs)
    assert len({key for key, _ in pairs}) == len(pairs)  # one key each
    return [result for _, result in sorted(pairs, key=lambda pair: pair[0])]


def test_task_tree_results_come_with_keys_in_tree_order_from_several_processes():
    # Each result is yielded as it comes in; its key sorts it into tree order.
    tops = [["a", 0], ["b", 0]]
    here = list(tasktree.map_tree(tops, _tree_task, 1))
    assert [key for key, _ in here] == sorted(key for key, _ in here)  # run here in tree order
    names = [r[0] for _, r in here]
    assert names[:3] == ["a", "a.0", "a.0.0"] and len(names) == 80  # depth first, as given
    results = _in_tree_order(tasktree.map_tree(tops, _tree_task, 3))
    assert [r[0] for r in results] == names
    assert len({r[1] for r in results}) > 1  # not all run here


def test_task_tree_tasks_of_a_worker_that_dies_are_run_again():
    parent = os.getpid()

    def dying(task, stop):
        if os.getpid() != parent and task[0].endswith("1"):
            os._exit(9)  # a crash in a worker, mid-run
        return _tree_task(task)

    names = [r[0] for r in _in_tree_order(tasktree.map_tree([["a", 0], ["b", 0]], dying, 3))]
    assert names == [r[0] for _, r in tasktree.map_tree([["a", 0], ["b", 0]], _tree_task, 1)]


@pytest.mark.parametrize("procs", [1, 3])
def test_task_tree_stops_when_an_info_is_refused(procs):
    seen = []
    with pytest.raises(tasktree.Refused):
        for _, result in tasktree.map_tree([["a", 0], ["b", 0]], _tree_task, procs,
                                           accept=lambda depth: depth < 2):
            seen.append(result[0])
    assert "a.0.0" not in seen  # a task at depth 2 was refused before its result came


def test_one_process_or_one_task_runs_here_without_forking():
    here = os.getpid()
    taken: list = []
    processes.take_in_processes(5, _pid_task, 1, lambda n, r: taken.append((n, r)))
    assert taken == [(n, (n * n, here)) for n in range(5)]  # in order, all here
    taken.clear()
    processes.take_in_processes(1, _pid_task, 4, lambda n, r: taken.append((n, r)))
    assert taken == [(0, (0, here))]


def test_children_whose_work_is_over_are_reaped_later_and_a_run_leaves_none(tmp_path, forking):
    # Their results are all in when the call returns; their exits are not waited for there
    # (processes.reap_later), and `reap`, which every run calls at its end, leaves no zombie.
    taken: dict = {}
    processes.take_in_processes(20, _pid_task, 3, taken.__setitem__)
    assert sorted(taken) == list(range(20)) and len({pid for _, pid in taken.values()}) > 1
    os.waitpid(-1, os.WNOHANG)  # a child is left (exited or exiting): no ChildProcessError
    processes.reap()  # the rest (one reaped just above is skipped)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    root = build_tree(tmp_path / "t", {f"d{k}/f{i}": b"x" * (i % 3 + 1) for k in range(4)
                                       for i in range(6)})
    assert len(find_duplicates([root], ScanOptions()).groups) == 3
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("verify", [False, True])
@pytest.mark.parametrize("cold", [False, True])
@pytest.mark.parametrize("late", [False, True])
def test_forked_reports_are_identical_to_one_process(tmp_path, monkeypatch, forking, seed,
                                                     verify, cold, late):
    root = build_tree(str(tmp_path / "t"), _hostile_spec(seed))
    one = find_duplicates([root], ScanOptions(threads=1, io_threads=1, verify=verify))
    if cold:
        _cold(monkeypatch)
    if late:  # the other processes' results taken once the table is freed, as a big scan's
        monkeypatch.setattr(smallfiles, "LATE_FILES", 0)
    many = find_duplicates([root], ScanOptions(threads=2, io_threads=8, verify=verify))
    assert one.groups
    assert _json(many) == _json(one)


def test_bytes_read_do_not_depend_on_the_walk_order(tmp_path, monkeypatch, forking):
    # 70 files of one large size, one per directory (a few per walk task): all alike but the
    # first the sequential walk lists, which differs in the middle (not at the edges the
    # partial stage reads). Beyond MAX_OPEN files the compare takes the group's first file as
    # its reference (this one: the others are read twice), so the bytes read depend on the
    # files' order: the sequential walk's (one process) is not the forked walk's tree order,
    # and the forked walk's tasks are merged as they come (here: reversed). Before, one
    # process read 12.1 MB and two 6.4 MB.
    size = hashing.WHOLE_LIMIT + 4 * 4096
    spec = {f"d{k:02}/f": b"x" * size for k in range(70)}
    root = build_tree(str(tmp_path / "t"), spec)
    order = [prefix + name for prefix, _, _, listing in walk_listings([root])
             for name in listing.names]
    with open(order[0], "r+b") as f:
        f.seek(size // 2)
        f.write(b"y")
    real = subtrees.map_tree
    came = []

    def reversed_arrival(*args, **kwargs):
        got = sorted(real(*args, **kwargs), key=lambda pair: pair[0], reverse=True)
        came.append(len(got))
        return iter(got)

    for reverse in (False, True):
        if reverse:
            monkeypatch.setattr(subtrees, "map_tree", reversed_arrival)
        for verify in (False, True):
            one = find_duplicates([root], ScanOptions(threads=1, io_threads=1, verify=verify))
            many = find_duplicates([root], ScanOptions(threads=2, io_threads=8, verify=verify))
            assert _json(many) == _json(one)
            assert one.stats.groups == 1 and one.groups[0].file_count == 69
    assert came and min(came) > 2  # the walk was forked, its tasks reversed


def _listed(walk, roots, **kwargs) -> tuple[list, list, list, tuple]:
    """Run a walk into a file table; return its records sorted, the paths marked as possibly
    linked (FileTable.linked: what the candidates check for repeated inodes), the problems, the
    counters."""
    counts = WalkCounters()
    table = FileTable()
    problems = []
    for item in walk(roots, counters=counts, lowest=1, **kwargs):
        if item is None:  # what was yielded is void (a forked walk that met a directory twice)
            table = FileTable()
            problems = []
        elif isinstance(item, PackedDirs):
            table.add_packed(item)
            problems += [FileProblem(path, error) for path, error in item.problems]
        else:
            prefix, root, dev, lst = item
            problems += lst.problems
            if lst.names:
                table.add_dir(prefix, root, dev, lst.names, lst.sizes, lst.inos, lst.mtimes,
                              lst.other_devs, lst.linked)
    records = sorted(table.records(range(len(table))))
    linked = sorted(table.path(i) for i in table.linked)
    return records, linked, sorted(problems, key=lambda p: p.path), (
        counts.dirs, counts.skipped_symlinks, counts.skipped_special, counts.dirs_revisited)


@pytest.mark.parametrize("seed", range(6))
def test_forked_walk_lists_what_the_sequential_walk_lists(tmp_path, forking, seed):
    root = build_tree(str(tmp_path / "t"), _hostile_spec(seed))
    forked = _listed(subtrees.walk_forked, [root], procs=3)
    one = _listed(walk_listings, [root])
    assert forked == one and len(one[0]) > 3


def test_a_directory_reached_twice_gives_the_sequential_walk(tmp_path, forking):
    root = build_tree(str(tmp_path / "t"), _hostile_spec(2))
    roots = [root, root + "/d1", root]  # a root inside a root, a root given twice
    forked = list(subtrees.walk_forked(roots, procs=3, lowest=1))
    if None in forked:  # found after some listings came: they are void
        forked = forked[len(forked) - forked[::-1].index(None) :]
    assert all(type(item) is tuple for item in forked)  # the sequential walk's listings
    assert _listed(subtrees.walk_forked, roots, procs=3) == _listed(walk_listings, roots)
    assert _listed(walk_listings, roots)[3][3] == 2  # two directories reached twice


def test_a_directory_reached_twice_inside_a_task_voids_what_was_yielded(tmp_path, forking):
    # Three subtrees at the top (tasks of their own); the second root lies deep in one of
    # them, so only that task meets it again, after the top levels were yielded.
    spec = {f"s{k}/c1/c2/c3/f{i}": b"%d" % (i % 3) * 100 for k in range(3) for i in range(6)}
    root = build_tree(str(tmp_path / "t"), spec)
    roots = [root, root + "/s1/c1/c2"]
    forked = list(subtrees.walk_forked(roots, procs=3, lowest=1))
    assert None in forked and type(forked[0]) is PackedDirs
    assert all(type(item) is tuple for item in forked[forked.index(None) + 1 :])
    assert _listed(subtrees.walk_forked, roots, procs=3) == _listed(walk_listings, roots)
    one = find_duplicates(roots, ScanOptions(threads=1, io_threads=1))
    many = find_duplicates(roots, ScanOptions(threads=2, io_threads=8))
    assert one.groups and _json(many) == _json(one)


def test_forked_run_with_nested_roots_reports_as_one_process(tmp_path, forking):
    root = build_tree(str(tmp_path / "t"), _hostile_spec(4))
    one = find_duplicates([root, root + "/d0"], ScanOptions(threads=1, io_threads=1))
    many = find_duplicates([root, root + "/d0"], ScanOptions(threads=2, io_threads=8))
    assert one.groups and _json(many) == _json(one)


@pytest.mark.parametrize("change", ["vanish", "shrink", "grow"])
def test_file_changed_before_a_forked_read_is_an_error_entry(tmp_path, monkeypatch, forking,
                                                             change):
    spec = {f"{g}{i}": b"%d" % g * 3000 for g in range(1, 6) for i in range(3)}
    root = build_tree(str(tmp_path / "t"), spec)
    real = cachedreads.open_file

    def changing(path):  # the open of its head read, in whichever process has its task
        if path.endswith("/31"):
            if change == "vanish":
                os.unlink(path)
            else:
                with open(path, "r+b") as f:
                    f.truncate(2) if change == "shrink" else f.write(b"3" * 3001)
        return real(path)

    monkeypatch.setattr(cachedreads, "open_file", changing)
    report = find_duplicates([root], ScanOptions(threads=2, io_threads=8))
    groups = sorted(sorted(os.path.basename(p) for p in g.paths) for g in report.groups)
    assert ["30", "32"] in groups and len(groups) == 5
    assert [os.path.basename(p.path) for p in report.problems] == ["31"]


def test_open_descriptors_stay_bounded_in_every_forked_process(tmp_path, monkeypatch, forking):
    root = tmp_path / "wide"
    root.mkdir()
    for i in range(10_000):  # two sizes, so two groups: both shared out to the processes
        (root / f"f{i:05d}").write_bytes(b"%05d" % (i % 2500) + b"x" * (i % 2))
    _cold(monkeypatch)
    peaks = tmp_path / "peaks"
    peaks.mkdir()

    def note() -> None:  # a line per read in a file per process (children included)
        count = len(os.listdir("/proc/self/fd"))
        fd = os.open(peaks / str(os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, b"%d\n" % count)  # one write: lines of threads do not mix
        finally:
            os.close(fd)

    real_fd, real_small = hashing.read_fd_whole, hashing.read_small

    def counting_fd(fd, size):
        note()
        return real_fd(fd, size)

    def counting_small(path, size):
        note()
        return real_small(path, size)

    monkeypatch.setattr(hashing, "read_fd_whole", counting_fd)
    monkeypatch.setattr(hashing, "read_small", counting_small)
    baseline = len(os.listdir("/proc/self/fd"))
    report = find_duplicates([str(root)], ScanOptions(threads=2, io_threads=8))
    assert len(report.groups) == 2500  # 1,250 contents of each size, four copies each
    found = {int(p.name): max(map(int, p.read_text().split())) for p in peaks.iterdir()}
    assert len(found) > 1  # read in more than one process
    # Each process: its share of the I/O threads (8 / 4 processes) * IO_DEPTH reads in flight,
    # plus what note() holds while it lists /proc/self/fd or appends (two per thread), plus
    # the memory file of its results and the task pipe. Unbounded reads would reach thousands.
    assert max(found.values()) - baseline <= 2 * 4 + 2 * 2 + 4


@pytest.mark.parametrize("large_cached", [True, False])
def test_large_files_compared_beside_the_small_ones_report_as_one_process(
        tmp_path, monkeypatch, forking, large_cached):
    # Warm, the large files' stage is a task of the small files' processes; when their first
    # bytes are not cached it is left to the parent (its reader threads), as before.
    root = build_tree(str(tmp_path / "t"), _hostile_spec(1))
    one = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    calls = tmp_path / "calls"
    real = largefiles.LargeFiles._compare_large_warm

    def noting(self, groups):
        with open(calls, "a") as f:  # one line per call, from whichever process ran it
            f.write("%d\n" % len(groups))
        return real(self, groups)

    def large_cold(paths) -> bool:
        return all(os.stat(p).st_size > hashing.WHOLE_LIMIT for p in paths)

    monkeypatch.setattr(largefiles.LargeFiles, "_compare_large_warm", noting)
    if not large_cached:
        monkeypatch.setattr(prefetch, "is_cold", large_cold)
    many = find_duplicates([root], ScanOptions(threads=2, io_threads=8))
    assert any(g.size > hashing.WHOLE_LIMIT for g in one.groups)
    assert _json(many) == _json(one)
    assert calls.read_text().split() == ["1"]  # one task, whatever process ran it


def test_forked_walk_lists_an_unreadable_directory_and_a_vanished_file_as_problems(
        tmp_path, monkeypatch, forking):
    # Root reads a chmod 000 directory: the refusal and the vanishing come from a scandir that
    # refuses the directory holding "deny" and removes "gone" between the listing and its stat.
    # The Python listing's (the compiled one, with the same problems, does not call os.scandir:
    # tests/dedup/test_cwalk.py lists unreadable directories as another user).
    monkeypatch.setattr(subtrees, "CompiledColumns", None)
    root = build_tree(str(tmp_path / "t"), {"a/gone": b"x", "a/stays": b"y", "b/deny": b"z",
                                            "b/c/f": b"w", "e": b"v"})
    real = os.scandir

    class Refusing:
        def __init__(self, fd):
            with real(fd) as it:
                self.entries = list(it)
            names = {e.name for e in self.entries}
            if "deny" in names:
                raise PermissionError(13, "Permission denied")
            if "gone" in names:
                os.unlink("gone", dir_fd=fd)

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(os, "scandir", Refusing)
    records, _linked, problems, counts = _listed(subtrees.walk_forked, [root], procs=1)
    assert [r[0] for r in records] == [root + "/a/stays", root + "/e"]
    assert problems == [FileProblem(root + "/a/gone", "vanished during scan"),
                        FileProblem(root + "/b", "Permission denied")]
    assert counts == (3, 0, 0, 0)  # the refused directory is counted, its subdirectory not seen


@pytest.mark.parametrize("blocks, cold", [(0, False), (8, False), (subtrees.COLD_BLOCKS, True)])
def test_a_tree_whose_top_levels_came_from_the_disk_is_walked_by_more_processes(
        tmp_path, monkeypatch, forking, blocks, cold):
    # A block or two read (a warm page cache missing a page) is not a cold tree.
    root = build_tree(str(tmp_path / "t"), _hostile_spec(3))
    counts = iter(range(0, 1_000_000, blocks or 1))  # blocks read, more at every look
    monkeypatch.setattr(subtrees, "_blocks_read", lambda: next(counts) if blocks else 0)
    procs = []
    real = subtrees.map_tree

    def counted(tasks, work, n, *args, **kwargs):
        procs.append(n)
        return real(tasks, work, n, *args, **kwargs)

    monkeypatch.setattr(subtrees, "map_tree", counted)
    walked = _listed(subtrees.walk_forked, [root], procs=2, cold_procs=4)
    assert walked == _listed(walk_listings, [root])
    assert procs == [4 if cold else 2]
