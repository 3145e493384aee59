"""The frozen value types (model.FrozenValue): compared, hashed, shown, copied and pickled by value,
and frozen, as the dataclasses they replace were."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from dedup import Action, FileEntry, FileProblem, Report, ScanOptions, Stats, UsageError


def test_values_compare_hash_and_show_by_value():
    a, b = FileProblem("/x", "gone"), FileProblem("/x", "gone")
    assert a == b and hash(a) == hash(b) and a != FileProblem("/x", "other")
    assert a != ("/x", "gone")  # not a tuple
    assert repr(a) == "FileProblem(path='/x', error='gone')"
    assert repr(Stats(files=2)).startswith("Stats(files=2, dirs=0, ")


def test_values_are_frozen():
    problem = FileProblem("/x", "gone")
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.path = "/y"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del problem.error  # type: ignore[misc]
    with pytest.raises(AttributeError):
        problem.other = 1  # type: ignore[attr-defined]


def test_replace_copies_with_changes_and_refuses_unknown_fields():
    stats = Stats(files=3, bytes_read=10)
    assert stats.replace(bytes_read=12) == Stats(files=3, bytes_read=12)
    assert stats == Stats(files=3, bytes_read=10)
    with pytest.raises(TypeError):
        stats.replace(nothing=1)
    report = Report((), (), stats)
    assert report.policy == {} and report.replace(dirs=()).dirs == ()


def test_values_pickle_and_keep_their_fields():
    entry = FileEntry("/a", 1, 2, 3, 4)
    for value in (FileProblem("/x", "gone"), Stats(files=1, elapsed_s=0.5),
                  ScanOptions(min_size=5, exclude=("*.pyc",)), Action("delete", entry, entry)):
        assert pickle.loads(pickle.dumps(value)) == value
    assert Stats().as_dict() == {name: 0 for name in Stats.__slots__} | {"elapsed_s": 0.0}


def test_scan_options_are_keyword_only_and_validated():
    with pytest.raises(TypeError):
        ScanOptions(True)  # type: ignore[misc]
    with pytest.raises(UsageError):
        ScanOptions(min_size=-1)
    assert ScanOptions(threads=3).threads == 3
