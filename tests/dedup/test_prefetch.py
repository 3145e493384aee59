"""Read-ahead on a cold page cache (dedup.prefetch): its order, its helper, and that it changes no
report. Nothing here depends on the disk or on speed: "cold" is forced where the code asks."""

from __future__ import annotations

import os
import random
import threading
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dedup import ScanOptions, find_duplicates, hashing, prefetch
from dedup.report import to_json
from dedup.table import FileTable
from fixtures.trees import build_tree


def test_spread_takes_the_ends_and_positions_between():
    assert prefetch.spread(0) == []
    assert prefetch.spread(3) == [0, 1, 2]
    picked = prefetch.spread(100, 8)
    assert picked[0] == 0 and picked[-1] == 99 and len(picked) == 8
    assert picked == sorted(set(picked))


@given(st.lists(st.integers(0, 2**64 - 1), max_size=200))
def test_rows_in_inode_order_sorts_rows_by_their_inode(inos):
    rows = array("I", range(1000, 1000 + len(inos)))
    got = prefetch.rows_in_inode_order(rows, array("Q", inos))
    assert list(got) == [r for _, r in sorted(zip(inos, rows, strict=True))]


def test_group_order_puts_a_group_where_its_last_member_is_read():
    assert prefetch.group_order([30, 10, 20, 10]) == [1, 3, 2, 0]


def test_read_ahead_skips_what_fails_and_counts_what_it_asked(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"x" * 100)
    large.write_bytes(b"y" * 100_000)
    asks = [(str(small), 100, True), (str(tmp_path / "gone"), 5, True),
            (str(large), 100_000, False), (str(large), 100_000, True)]
    assert prefetch.read_ahead(asks, 4096) == 3


def test_is_cold_asks_the_page_cache_without_waiting(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    paths = [str(tmp_path / "missing"), str(path)]
    assert prefetch.is_cold(paths) is False  # just written: in the page cache (or not askable)
    if not hashing._RWF_NOWAIT:
        return

    def would_wait(fd, buffers, offset, flags=0):
        raise BlockingIOError

    monkeypatch.setattr(os, "preadv", would_wait)
    assert prefetch.is_cold(paths) is True


def _table_and_groups(root: str) -> tuple[FileTable, list, list]:
    table = FileTable()
    names = sorted(os.listdir(root))
    sizes = [os.stat(os.path.join(root, n)).st_size for n in names]
    inos = [os.stat(os.path.join(root, n)).st_ino for n in names]
    table.add_dir(root + "/", 0, os.stat(root).st_dev, names, sizes, inos, [0] * len(names))
    small = [array("I", [0, 1]), array("I", [2, 3])]
    large = [table.records([4, 5])]
    return table, small, large


def test_start_forks_a_helper_and_reorders_the_small_groups(tmp_path, monkeypatch):
    root = build_tree(str(tmp_path / "t"), {
        "a1": b"a" * 10, "a2": b"a" * 10, "b1": b"b" * 20, "b2": b"b" * 20,
        "c1": b"c" * 70_000, "c2": b"c" * 70_000})
    table, small, large = _table_and_groups(root)
    assert prefetch.start(table, small, large, 4096) is None  # warm: nothing to do
    monkeypatch.setattr(prefetch, "is_cold", lambda paths: True)
    plan = prefetch.start(table, small, large, 4096)
    assert plan is not None and plan.pid > 0
    assert sorted(map(list, plan.small)) == sorted(map(list, small))  # a permutation
    assert plan.whole_large  # 140,000 bytes of large files: within the budget
    plan.stop()
    assert plan.pid == 0
    plan.stop()  # a second stop is harmless
    monkeypatch.setattr(prefetch, "LARGE_BUDGET", 100_000)
    plan = prefetch.start(table, small, large, 4096)
    assert plan is not None and not plan.whole_large  # their edges only: readers stay
    plan.stop()


def test_start_reads_nothing_ahead_while_another_thread_runs(tmp_path, monkeypatch):
    root = build_tree(str(tmp_path / "t"), {f"f{i}": b"z" * (10 + i // 2) for i in range(6)})
    table, small, large = _table_and_groups(root)
    monkeypatch.setattr(prefetch, "is_cold", lambda paths: True)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert prefetch.start(table, small, large, 4096) is None  # a fork would copy its locks
    finally:
        release.set()
        other.join()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [prefetch.LARGE_BUDGET, 0])
def test_a_cold_run_reads_ahead_and_reports_what_a_warm_one_does(tmp_path, monkeypatch, seed,
                                                                  budget):
    rng = random.Random(seed)
    spec = {}
    for i in range(300):
        size = rng.choice([5, 3000, 3000, hashing.WHOLE_LIMIT + 10])
        spec[f"d{i % 7}/f{i}"] = bytes([rng.randrange(3)]) * size
    root = build_tree(str(tmp_path / "t"), spec)
    one = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    started = []
    real_start = prefetch.start

    def recording(*args):
        plan = real_start(*args)
        started.append(plan)
        return plan

    monkeypatch.setattr(prefetch, "is_cold", lambda paths: True)
    monkeypatch.setattr(prefetch, "start", recording)
    monkeypatch.setattr(prefetch, "LARGE_BUDGET", budget)
    cold = find_duplicates([root], ScanOptions(threads=2, io_threads=8))
    assert started and started[0] is not None and started[0].pid == 0  # forked, then reaped
    assert one.groups
    blank = '"elapsed_s": 0'
    assert (to_json(cold).replace(f'"elapsed_s": {cold.stats.elapsed_s}', blank)
            == to_json(one).replace(f'"elapsed_s": {one.stats.elapsed_s}', blank))


def test_one_probe_missing_of_several_is_not_a_cold_page_cache(tmp_path, monkeypatch):
    # A warm page cache may miss a few files (a kernel paging out idle file pages): cold is
    # when at least half of the probes miss.
    if not hashing._RWF_NOWAIT:
        return
    paths = []
    for k in range(8):
        path = tmp_path / f"f{k}"
        path.write_bytes(b"data")
        paths.append(str(path))
    real = os.preadv
    misses = {"n": 0}

    def first_misses(fd, buffers, offset, flags=0):
        if flags and misses["n"] < misses["of"]:
            misses["n"] += 1
            raise BlockingIOError
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(os, "preadv", first_misses)
    for missing, cold in ((0, False), (1, False), (3, False), (4, True), (8, True)):
        misses.update(n=0, of=missing)
        assert prefetch.is_cold(paths) is cold, missing


def test_a_cold_run_reading_ahead_has_no_budget_of_warm_misses(tmp_path, monkeypatch):
    # With a read-ahead (the page cache known cold) the head stage runs with a budget of 0: its
    # first miss ends the warm path (what a budget of 0 does is tests/dedup/test_heads.py's
    # test_cold_heads_from_the_pool_give_the_same_report).
    from dedup import heads, pipeline

    root = build_tree(str(tmp_path / "t"), {f"d{k}/f": b"x" * 300 for k in range(4)})
    monkeypatch.setattr(prefetch, "is_cold", lambda paths: True)
    budgets = []
    real = heads.Heads._split_heads

    def split(self, groups):
        budgets.append(self.miss_budget)
        return real(self, groups)

    monkeypatch.setattr(heads.Heads, "_split_heads", split)
    report = find_duplicates([root], ScanOptions(threads=1, io_threads=4))
    assert len(report.groups) == 1 and budgets == [0]
    assert pipeline._Run.miss_budget == heads.WARM_MISSES  # the class's: warm runs keep it
