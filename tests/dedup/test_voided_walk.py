"""A forked walk voided part-way (a directory reached twice) reports each walk problem once."""

from __future__ import annotations

from dedup import ScanOptions, find_duplicates, subtrees
from dedup.table import PackedDirs
from fixtures.trees import build_tree
from tests.dedup.test_processes import _json, forking  # noqa: F401  (forking is a fixture)


def test_problems_before_the_void_are_reported_once(tmp_path, forking):  # noqa: F811
    # The missing root is a problem of the top levels, yielded (in the first PackedDirs) before a
    # task meets the nested root again; the sequential walk that follows finds it once more.
    spec = {f"s{k}/c1/c2/c3/f{i}": b"%d" % (i % 3) * 100 for k in range(3) for i in range(6)}
    root = build_tree(str(tmp_path / "t"), spec)
    missing = str(tmp_path / "gone")
    roots = [missing, root, root + "/s1/c1/c2"]
    forked = list(subtrees.walk_forked(roots, procs=3, lowest=1))
    voided = forked[: forked.index(None)]
    assert [p for item in voided if type(item) is PackedDirs for p in item.problems]  # it was met
    one = find_duplicates(roots, ScanOptions(threads=1, io_threads=1))
    many = find_duplicates(roots, ScanOptions(threads=2, io_threads=8))
    assert [(p.path, p.error) for p in many.problems] == [(missing, "No such file or directory")]
    assert one.groups and _json(many) == _json(one)
