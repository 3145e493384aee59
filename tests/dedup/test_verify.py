"""Lockstep byte comparison: classes, early stop, bounded open files, failures."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.model import FileEntry
from dedup.verify import partition_identical
from fixtures.trees import build_tree


def entries_for(root, names):
    out = []
    for name in names:
        path = os.path.join(root, name)
        s = os.stat(path)
        out.append(FileEntry(path, s.st_size, s.st_dev, s.st_ino, s.st_mtime_ns))
    return out


def classes_by_name(part):
    return sorted(sorted(os.path.basename(e.path) for e in cls) for cls in part.classes)


def test_partitions_by_content_keeping_singletons(tmp_path):
    root = build_tree(tmp_path, {"a": b"same", "b": b"same", "c": b"diff", "d": b"same"})
    part = partition_identical(entries_for(root, "abcd"))
    assert classes_by_name(part) == [["a", "b", "d"], ["c"]] and part.problems == []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([b"aa", b"ab", b"ba", b"bb"]), min_size=2, max_size=12),
       st.integers(2, 4))
def test_bounded_open_files_give_the_same_classes(tmp_path_factory, contents, max_open):
    root = str(tmp_path_factory.mktemp("v"))
    names = [f"f{i:02d}" for i in range(len(contents))]
    build_tree(root, dict(zip(names, contents, strict=True)))
    part = partition_identical(entries_for(root, names), max_open=max_open)
    model: dict[bytes, list[str]] = {}
    for name, data in zip(names, contents, strict=True):
        model.setdefault(data, []).append(name)
    assert classes_by_name(part) == sorted(sorted(v) for v in model.values())


def test_unique_file_stops_being_read_after_the_first_differing_chunk(tmp_path, counting_opener):
    big = 1024 * 1024
    root = build_tree(tmp_path, {"a": b"x" * big, "b": b"x" * big, "c": b"y" + b"x" * (big - 1)})
    counter = counting_opener
    part = partition_identical(entries_for(root, "abc"), opener=counter)
    assert classes_by_name(part) == [["a", "b"], ["c"]]
    assert counter.bytes < 2 * big + 256 * 1024  # c was read for one chunk only


def test_read_error_mid_file_drops_only_that_file(tmp_path, make_failing_opener):
    data = b"z" * 300_000
    root = build_tree(tmp_path, {"a": data, "b": data, "c": data})
    opener = make_failing_opener(fail_mid_read=["b"], after=200_000)
    part = partition_identical(entries_for(root, "abc"), opener=opener)
    assert classes_by_name(part) == [["a", "c"]]
    assert [(os.path.basename(p.path), p.error) for p in part.problems] == [
        ("b", "Input/output error")]


def test_reference_failure_in_batched_mode_keeps_others_compared(tmp_path, make_failing_opener):
    root = build_tree(tmp_path, {n: b"same" for n in "abcde"})
    part = partition_identical(entries_for(root, "abcde"), opener=make_failing_opener(["a"]),
                               max_open=2)
    assert classes_by_name(part) == [["b", "c", "d", "e"]]
    assert [os.path.basename(p.path) for p in part.problems] == ["a"]
