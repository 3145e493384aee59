"""Grouping, pure and end to end, against a brute-force "group by full bytes" model."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup import ScanOptions, find_duplicates, hashing
from dedup.grouping import collapse_hardlinks, expand_groups, group_by_size, split_by
from dedup.model import FileEntry
from fixtures.trees import HardLink, build_tree


def entry(path: str, size: int, ino: int, dev: int = 1, root: int = 0) -> FileEntry:
    return FileEntry(path, size, dev, ino, 0, root)


# --- pure functions -------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), max_size=30))
def test_split_by_matches_brute_force_grouping(items):
    files = [entry(f"f{i}", size, ino=i) for i, (size, _) in enumerate(items)]
    keys = {f"f{i}": key for i, (_, key) in enumerate(items)}
    got = split_by(group_by_size(files), lambda e: keys[e.path])
    model = defaultdict(set)
    for f in files:
        model[(f.size, keys[f.path])].add(f.path)
    assert sorted(sorted(e.path for e in g) for g in got) == sorted(
        sorted(paths) for paths in model.values() if len(paths) > 1
    )


def test_split_by_drops_only_the_unkeyed_entry():
    group = [entry("a", 5, 1), entry("b", 5, 2), entry("c", 5, 3)]
    got = split_by([group], lambda e: None if e.path == "a" else "k")
    assert [[e.path for e in g] for g in got] == [["b", "c"]]


def test_group_by_size_drops_sizes_held_by_one_file():
    groups = group_by_size([entry("a", 1, 1), entry("b", 2, 2), entry("c", 2, 3)])
    assert [[e.path for e in g] for g in groups] == [["b", "c"]]


def test_hard_links_collapse_to_one_representative_listing_all_paths():
    files = [entry("z", 3, 7), entry("a", 3, 7), entry("b", 3, 8), entry("a", 3, 7)]
    reps, links = collapse_hardlinks(files)
    assert sorted(e.path for e in reps) == ["a", "b"]  # first path in order, "a" seen twice once
    assert [e.path for e in links[(1, 7)]] == ["a", "z"]
    groups = expand_groups([reps], links)
    assert groups[0].paths == ["a", "b", "z"] and groups[0].file_count == 2


def test_hard_links_alone_are_never_a_duplicate_group():
    reps, links = collapse_hardlinks([entry("a", 3, 7), entry("b", 3, 7)])
    assert group_by_size(reps) == []


def test_same_inode_on_another_device_is_another_file():
    reps, _ = collapse_hardlinks([entry("a", 3, 7, dev=1), entry("b", 3, 7, dev=2)])
    assert len(reps) == 2


# --- whole pipeline on generated trees --------------------------------------------------------

_BASES = st.binary(min_size=0, max_size=40)


@st.composite
def trees(draw):
    """A list of (kind, payload): planted duplicates, same-size traps, hard links."""
    bases = draw(st.lists(_BASES, min_size=1, max_size=4))
    nodes = []
    for _ in range(draw(st.integers(1, 14))):
        base = draw(st.sampled_from(bases))
        kind = draw(st.sampled_from(["copy", "copy", "trap", "link"]))
        if kind == "trap" and base:
            # Same size, one byte flipped at the first, a middle or the last position.
            pos = draw(st.sampled_from([0, len(base) // 2, len(base) - 1]))
            base = base[:pos] + bytes([base[pos] ^ 0x01]) + base[pos + 1 :]
        if kind == "link" and nodes:
            nodes.append(("link", draw(st.integers(0, len(nodes) - 1))))
        else:
            nodes.append(("file", base))
    return nodes


def brute_force(root: str, include_empty: bool) -> set[frozenset[str]]:
    by_content: dict[bytes, dict[tuple[int, int], list[str]]] = defaultdict(dict)
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            with open(path, "rb") as f:
                data = f.read()
            if not data and not include_empty:
                continue
            by_content[data].setdefault((st_.st_dev, st_.st_ino), []).append(path)
    return {
        frozenset(p for paths in inodes.values() for p in paths)
        for inodes in by_content.values()
        if len(inodes) > 1
    }


class DictCache:
    """An in-memory `DigestCache`: with a cache the pipeline takes its full-digest path."""

    def __init__(self):
        self.store = {}

    def get(self, entry, hash_name, span):
        return self.store.get((entry.dev, entry.ino, entry.size, entry.mtime_ns, hash_name, span))

    def put(self, entry, hash_name, span, digest, now_ns):
        self.store[(entry.dev, entry.ino, entry.size, entry.mtime_ns, hash_name, span)] = digest

    def close(self):
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=trees(),
    include_empty=st.booleans(),
    verify=st.booleans(),
    threads=st.sampled_from([1, 3]),
    digests=st.booleans(),
)
def test_pipeline_matches_brute_force_on_generated_trees(
    nodes, include_empty, verify, threads, digests
):
    # Tiny limits so 40-byte files exercise the both-ends partial key and the streaming stage.
    with tempfile.TemporaryDirectory() as tmp, mock.patch.multiple(
        hashing, EDGE=4, WHOLE_LIMIT=8, CHUNK=16
    ):
        spec = {}
        for i, (kind, payload) in enumerate(nodes):
            path = f"d{i % 3}/f{i}"
            spec[path] = HardLink(_target(nodes, payload)) if kind == "link" else payload
        build_tree(tmp, spec)
        options = ScanOptions(include_empty=include_empty, verify=verify, threads=threads)
        report = find_duplicates([tmp], options, cache=DictCache() if digests else None)
        got = {frozenset(g.paths) for g in report.groups}
        assert got == brute_force(tmp, include_empty)
        assert report.problems == ()


def _target(nodes, index):
    # Follow links to the file they point at (a link may point at a link).
    while nodes[index][0] == "link":
        index = nodes[index][1]
    return f"d{index % 3}/f{index}"


def test_duplicate_group_keeps_its_entries_packed_and_gives_them_back_exactly():
    import dataclasses
    import pickle

    from dedup.model import DuplicateGroup, FileEntry

    entries = (FileEntry("/r/a", 5, 2**63 + 7, 2**64 - 1, -1, 0),
               FileEntry("/r/\udcff\nb", 5, 3, 9, 1_700_000_000_123_456_789, 2),
               FileEntry("/r/c", 5, 3, 9, 0, 2))
    group = DuplicateGroup(5, entries)
    assert group.entries == entries and all(type(e) is FileEntry for e in group.entries)
    assert group.paths == ["/r/a", "/r/\udcff\nb", "/r/c"]
    assert group.file_count == 2 and group.wasted_bytes == 5 and group.first == (0, "/r/a")
    assert group == DuplicateGroup(5, list(entries)) and hash(group) == hash(DuplicateGroup(5, entries))
    assert group != DuplicateGroup(6, entries)
    assert pickle.loads(pickle.dumps(group)) == group
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.size = 7  # type: ignore[misc]
    assert DuplicateGroup(1, ()).entries == () and DuplicateGroup(1, ()).paths == []


_PATH = st.binary(min_size=1, max_size=12).map(lambda b: os.fsdecode(b.replace(b"\0", b"x")))


@given(st.lists(st.lists(_PATH, min_size=2, max_size=4), max_size=5))
def test_null_separated_output_is_each_paths_bytes_then_nul(groups):
    from dedup.model import DuplicateGroup, Report, Stats
    from dedup.report import to_null_separated

    report = Report(tuple(DuplicateGroup(7, [FileEntry(p, 7, 1, i, 0) for i, p in enumerate(g)])
                          for g in groups), (), Stats(), {})
    want = b"".join(b"".join(os.fsencode(p) + b"\0" for p in g) + b"\0" for g in groups)
    assert to_null_separated(report) == want


def test_null_separated_output_in_pieces_is_the_whole_output():
    from dedup.model import DuplicateGroup, Report, Stats
    from dedup.report import iter_null_separated

    name = os.fsdecode(b"d\xff\xe9/" + b"n" * 200)  # undecodable bytes, in every piece
    groups = [[f"/{i}/{name}{k}" for k in range(3)] for i in range(400)]  # ~240 KiB
    report = Report(tuple(DuplicateGroup(7, [FileEntry(p, 7, 1, i, 0) for i, p in enumerate(g)])
                          for g in groups), (), Stats(), {})
    pieces = list(iter_null_separated(report))
    assert len(pieces) > 2
    assert b"".join(pieces) == b"".join(
        b"".join(os.fsencode(p) + b"\0" for p in g) + b"\0" for g in groups)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 2), st.lists(_PATH, min_size=2,
                                                                          max_size=3)),
                max_size=12))
def test_expanded_groups_come_largest_first_then_by_first_entry(specs):
    # expand_groups sorts by size in C and only ties by the first entry: the order must be
    # that of the full key (-size, root, path bytes), ties of size included.
    groups, seen = [], set()
    for size, root, paths in specs:
        paths = [p for p in dict.fromkeys(paths) if p not in seen]
        seen.update(paths)
        if len(paths) > 1:
            groups.append([(p, size, 1, len(seen) + k, 0, root) for k, p in enumerate(paths)])
    out = expand_groups(groups, {})
    want = sorted(out, key=lambda g: (-g.size, g.first[0], os.fsencode(g.first[1])))
    assert out == want and len(out) == len(groups)


@given(st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 3), st.lists(_PATH, min_size=1,
                                                                           max_size=3)),
                min_size=1, max_size=12))
def test_packed_order_orders_groups_as_order_key(specs):
    from dedup.model import DuplicateGroup

    groups = [DuplicateGroup(size, [FileEntry(p, size, 1, i, 0, root) for i, p in enumerate(ps)])
              for size, root, ps in specs]
    by_key = sorted(range(len(groups)), key=lambda i: groups[i].order_key())
    by_bytes = sorted(range(len(groups)), key=lambda i: DuplicateGroup.packed_order(
        *groups[i].pack()))
    assert [groups[i].order_key() for i in by_bytes] == [groups[i].order_key() for i in by_key]
