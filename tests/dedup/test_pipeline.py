"""find_duplicates end to end on the `mixed` edge cases, each its own test."""

from __future__ import annotations

import json
import os

import pytest

from dedup import ScanOptions, find_duplicates, hashing, pipeline
from dedup.hashing import open_for_read
from dedup.report import to_json
from fixtures.trees import build_tree


def group_sets(report):
    return sorted((set(g.paths) for g in report.groups), key=sorted)


def by_sorted(groups):
    return sorted(groups, key=sorted)


def test_mixed_tree_groups_match_the_truth(mixed):
    root, expected = mixed
    report = find_duplicates([root])
    assert group_sets(report) == by_sorted(expected)
    assert report.problems == ()
    assert report.stats.skipped_special == 1  # the FIFO, never opened
    assert report.stats.skipped_symlinks == 3


def test_hard_links_are_one_file_listed_under_every_path(mixed):
    root, _ = mixed
    report = find_duplicates([root])
    group = next(g for g in report.groups if os.path.join(root, "a/same1") in g.paths)
    assert os.path.join(root, "a/same1.hardlink") in group.paths
    assert group.file_count == len(group.paths) - 1
    assert report.stats.hard_links == 1


def test_following_symlinks_adds_the_link_path_and_survives_the_loop(mixed):
    root, expected = mixed
    report = find_duplicates([root], ScanOptions(follow_symlinks=True))
    expected[0].add(os.path.join(root, "links/to-same1"))
    assert group_sets(report) == by_sorted(expected)
    assert report.problems == ()


def test_empty_files_are_reported_only_when_asked(mixed):
    root, expected = mixed
    empties = {os.path.join(root, "empty/e1"), os.path.join(root, "empty/e2")}
    assert empties not in group_sets(find_duplicates([root]))
    assert empties in group_sets(find_duplicates([root], ScanOptions(include_empty=True)))


def test_unreadable_member_leaves_rest_of_group_reported(mixed, make_failing_opener):
    root, expected = mixed
    secret = os.path.join(root, "unreadable/secret")
    report = find_duplicates([root], opener=make_failing_opener([secret]))
    expected[2].discard(secret)
    assert group_sets(report) == by_sorted(expected)
    assert [(p.path, p.error) for p in report.problems] == [(secret, "Permission denied")]


def test_unreadable_directory_is_an_error_entry_and_the_rest_is_reported(mixed):
    root, expected = mixed
    locked = os.path.join(root, "locked")

    def scandir(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", path)
        return os.scandir(path)

    report = find_duplicates([root], scandir=scandir)
    expected[0].discard(os.path.join(locked, "inside"))
    assert group_sets(report) == by_sorted(expected)
    assert [p.path for p in report.problems] == [locked]


def test_odd_names_round_trip_through_json_to_the_exact_bytes(mixed):
    root, _ = mixed
    doc = json.loads(to_json(find_duplicates([root])))
    names = {os.fsencode(p) for g in doc["groups"] for p in g["paths"]}
    base = os.fsencode(root)
    for raw in (b"c/new\nline", b"c/tab\there", b"c/bad-\xff\xfe-bytes", b"c/-leading-dash"):
        assert os.path.join(base, raw) in names


def test_sixty_deep_path_is_found(mixed):
    root, _ = mixed
    report = find_duplicates([root])
    assert any(p.count("/d") >= 60 for g in report.groups for p in g.paths)


def test_file_deleted_mid_scan_is_an_error_and_its_group_survives(tmp_path):
    root = build_tree(tmp_path, {"a": b"dup", "b": b"dup", "c": b"dup"})

    def opener(path):
        if path.endswith("/b"):
            os.unlink(path)  # deleted after the walk saw it, before it is read
        return hashing.open_for_read(path)

    report = find_duplicates([root], opener=opener)
    assert group_sets(report) == [{f"{root}/a", f"{root}/c"}]
    assert [(p.path, p.error) for p in report.problems] == [(f"{root}/b", "No such file or directory")]


@pytest.mark.parametrize("verify", [False, True])
def test_read_error_mid_file_drops_only_that_file(tmp_path, verify, make_failing_opener):
    data = os.urandom(hashing.WHOLE_LIMIT * 3)
    root = build_tree(tmp_path, {"a": data, "b": data, "c": data})
    opener = make_failing_opener(fail_mid_read=["b"], after=hashing.WHOLE_LIMIT)
    report = find_duplicates([root], ScanOptions(verify=verify), opener=opener)
    assert group_sets(report) == [{f"{root}/a", f"{root}/c"}]
    assert [p.error for p in report.problems] == ["Input/output error"]


def test_large_files_differing_in_the_middle_are_not_grouped(tmp_path):
    size = hashing.WHOLE_LIMIT * 4
    base = bytearray(os.urandom(size))
    other = bytearray(base)
    other[size // 2] ^= 1
    root = build_tree(tmp_path, {"a": bytes(base), "b": bytes(base), "c": bytes(other)})
    for verify in (False, True):
        report = find_duplicates([root], ScanOptions(verify=verify))
        assert group_sets(report) == [{f"{root}/a", f"{root}/b"}]


def test_unique_sizes_are_never_opened_and_ends_suffice_to_split(tmp_path, counting_opener):
    size = hashing.WHOLE_LIMIT * 4
    root = build_tree(tmp_path, {"lonely": b"q" * 10, "x": b"a" * size, "y": b"b" * size})
    counter = counting_opener
    report = find_duplicates([root], opener=counter)
    assert report.groups == ()
    assert f"{root}/lonely" not in counter.opens
    assert counter.bytes == 4 * hashing.EDGE


def test_size_and_glob_filters_select_files(tmp_path):
    root = build_tree(tmp_path, {"s1": b"ab", "s2": b"ab", "big1": b"x" * 100, "big2": b"x" * 100,
                                 "skip/big3": b"x" * 100, "n.txt": b"ab"})
    assert group_sets(find_duplicates([root], ScanOptions(min_size=3))) == [
        {f"{root}/big1", f"{root}/big2", f"{root}/skip/big3"}]
    assert group_sets(find_duplicates([root], ScanOptions(max_size=2, include=("*.txt", "*/s1")))
                      ) == [{f"{root}/n.txt", f"{root}/s1"}]
    report = find_duplicates([root], ScanOptions(min_size=3, exclude=("*/skip",)))
    assert group_sets(report) == [{f"{root}/big1", f"{root}/big2"}]


def test_stats_count_wasted_and_read_bytes(tmp_path):
    root = build_tree(tmp_path, {"a": b"12345", "b": b"12345", "c": b"12345", "d": b"54321"})
    stats = find_duplicates([root]).stats
    assert (stats.groups, stats.duplicate_files, stats.wasted_bytes) == (1, 2, 10)
    assert stats.bytes_read == 20 and stats.files == 4 and stats.errors == 0


def test_verify_reads_each_small_file_once(tmp_path):
    # Small files are read whole in one pass; --verify compares those bytes in memory.
    spec = {"a": b"x" * 1000, "b": b"x" * 1000, "c": b"x" * 1000, "d": b"y" * 1000}
    root = build_tree(tmp_path, spec)
    opened = []

    def counting_opener(path):
        opened.append(os.path.basename(path))
        return open_for_read(path)

    report = find_duplicates([root], ScanOptions(verify=True), opener=counting_opener)
    assert [sorted(os.path.basename(p) for p in g.paths) for g in report.groups] == [["a", "b", "c"]]
    assert sorted(opened) == ["a", "b", "c", "d"] and report.stats.bytes_read == 4000


def test_verify_tells_apart_small_files_whose_digests_collide(tmp_path, monkeypatch):
    # A digest that says everything is equal: only the byte comparison can split the group.
    root = build_tree(tmp_path, {"a": b"same", "b": b"same", "c": b"diff"})
    monkeypatch.setitem(hashing.ONE_SHOT, "mmh3", lambda data: b"constant")
    report = find_duplicates([root], ScanOptions(verify=True))
    assert [sorted(os.path.basename(p) for p in g.paths) for g in report.groups] == [["a", "b"]]


@pytest.mark.parametrize("forked", [False, True])
def test_one_file_reached_by_two_paths_is_one_file(tmp_path, monkeypatch, forked):
    # Only files with more links, reached through a symlink, or named as roots are checked for
    # a repeated inode (FileTable.linked): each of those ways, and a root given twice.
    from fixtures.trees import Symlink

    root = build_tree(str(tmp_path / "t"), {"d/f": b"one", "d/copy": b"one", "lone": b"two",
                                            "d/to-lone": Symlink("../lone")})
    # The run's processes follow pipeline.usable_cpus (threads=4 asks for up to 4): one, or 4.
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 4 if forked else 1)
    f, copy = f"{root}/d/f", f"{root}/d/copy"
    for roots in ([f, f"{root}/d"], [f, f, copy], [f"{root}/d", f]):
        report = find_duplicates(roots, ScanOptions(threads=4))
        assert [sorted(g.paths) for g in report.groups] == [sorted([f, copy])]
        assert report.stats.files == 3 and report.stats.hard_links == 1  # paths, one twice
    report = find_duplicates([root], ScanOptions(follow_symlinks=True, threads=4))
    assert [sorted(g.paths) for g in report.groups] == [sorted([f, copy])]  # lone: one file
    assert report.stats.files == 4 and report.stats.hard_links == 1  # lone and its link
