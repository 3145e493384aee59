"""--cache: a rerun over an unchanged tree reads almost nothing; changed files are rehashed."""

from __future__ import annotations

import os

import pytest

from dedup import HashCacheError, ScanOptions, find_duplicates, hashing
from dedup.cli import main
from dedup.hashcache import HashCache
from fixtures.trees import build_tree

OLD_NS = 1_600_000_000 * 10**9  # well outside the racy window


def age(root):
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(dirpath, name), ns=(OLD_NS, OLD_NS))


@pytest.fixture
def tree(tmp_path):
    big = os.urandom(hashing.WHOLE_LIMIT * 2)
    # e differs in its last byte whatever it was (`+ b"!"` made e a copy once in 256 runs)
    root = build_tree(tmp_path / "t", {"a": b"small dup", "b": b"small dup", "c": big, "d": big,
                                       "e": big[:-1] + bytes([big[-1] ^ 1])})
    age(root)
    return root


def test_second_run_over_unchanged_tree_reads_nothing(tree, tmp_path, counting_opener):
    options = ScanOptions(cache_path=str(tmp_path / "h.cache"))
    first = find_duplicates([tree], options)
    second = find_duplicates([tree], options, opener=counting_opener)
    assert [g.paths for g in second.groups] == [g.paths for g in first.groups]
    assert len(second.groups) == 2
    assert counting_opener.bytes == 0 and counting_opener.opens == {}
    assert second.stats.bytes_read == 0


def test_changed_file_is_rehashed_and_regrouped(tree, tmp_path, counting_opener):
    options = ScanOptions(cache_path=str(tmp_path / "h.cache"))
    find_duplicates([tree], options)
    with open(f"{tree}/d", "r+b") as f:  # same size, different content, new mtime
        f.seek(hashing.WHOLE_LIMIT)
        f.write(b"changed")
    os.utime(f"{tree}/d", ns=(OLD_NS, OLD_NS + 1))
    report = find_duplicates([tree], options, opener=counting_opener)
    assert [os.path.basename(p) for g in report.groups for p in g.paths] == ["a", "b"]
    assert set(counting_opener.opens) == {f"{tree}/d"}


def test_recently_modified_files_are_not_cached(tmp_path, counting_opener):
    root = build_tree(tmp_path / "t", {"a": b"fresh", "b": b"fresh"})  # mtime = now
    options = ScanOptions(cache_path=str(tmp_path / "h.cache"))
    find_duplicates([root], options)
    find_duplicates([root], options, opener=counting_opener)
    assert counting_opener.bytes == 10


def test_a_cache_in_use_by_another_run_is_shared(tree, tmp_path, capsys, counting_opener):
    # One cache file serves any number of runs at once (issue 17): a run while another holds the
    # file open works, and what it stored is there for the next run while the holder stays open.
    path = str(tmp_path / "h.cache")
    holder = HashCache(path)
    try:
        assert main(["--cache", path, tree]) == 0
        second = find_duplicates([tree], ScanOptions(cache_path=path), opener=counting_opener)
    finally:
        holder.close()
    assert len(second.groups) == 2 and counting_opener.bytes == 0
    assert "error" not in capsys.readouterr().err


def test_damaged_cache_file_is_a_clear_fatal_error(tree, tmp_path, capsys):
    path = tmp_path / "h.cache"
    path.write_bytes(b"this is not a cache file at all" * 10)
    with pytest.raises(HashCacheError):
        find_duplicates([tree], ScanOptions(cache_path=str(path)))
    assert main(["--cache", str(path), tree]) == 1


def test_a_time_the_table_clamps_is_never_cached(tmp_path):
    # Before 1678 every time is the same clamped one (dedup.table.clamp_ns): a digest keyed by it
    # could outlive a change of the file with its time set to another such time.
    from dedup.model import FileEntry
    from dedup.table import NS_MAX, NS_MIN

    cache = HashCache(str(tmp_path / "h.cache"))
    try:
        for mtime in (NS_MIN, NS_MAX, OLD_NS):
            entry = FileEntry("/x", 100, 1, 2, mtime, 0)
            cache.put(entry, "mmh3", "whole", b"d" * 16, now_ns=NS_MAX)
            assert cache.get(entry, "mmh3", "whole") == (b"d" * 16 if mtime == OLD_NS else None)
    finally:
        cache.close()
