"""Pure planning: who is kept, what is acted on, and never an empty group."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.model import DuplicateGroup, FileEntry
from dedup.plan import KEEP_POLICIES, choose_keeper, plan_actions


def group(*specs):
    # spec: (path, ino, mtime_ns)
    entries = tuple(sorted((FileEntry(p, 3, 1, ino, m) for p, ino, m in specs),
                           key=FileEntry.order_key))
    return DuplicateGroup(3, entries)


G = group(("/r/b/long-name", 1, 30), ("/r/a", 2, 20), ("/r/c", 3, 10), ("/r/d", 3, 10))


@pytest.mark.parametrize("keep, path", [("first", "/r/a"), ("oldest", "/r/c"),
                                        ("newest", "/r/b/long-name"), ("shortest-path", "/r/a")])
def test_keep_policies_choose_the_documented_file(keep, path):
    assert choose_keeper(G, keep).path == path


def test_keep_path_is_preferred_and_protected():
    actions = plan_actions([G], op="delete", keep="first", keep_paths=["/r/b"])
    assert {a.keep.path for a in actions} == {"/r/b/long-name"}
    assert sorted(a.target.path for a in actions) == ["/r/a", "/r/c", "/r/d"]


def test_paths_of_the_kept_file_are_never_targets():
    actions = plan_actions([G], op="hardlink", keep="oldest")
    assert sorted(a.target.path for a in actions) == ["/r/a", "/r/b/long-name"]


def test_keep_path_prefix_matches_whole_components_only():
    g = group(("/r/ref-other/x", 1, 0), ("/r/ref/y", 2, 0))
    actions = plan_actions([g], op="delete", keep_paths=["/r/ref"])
    assert [a.target.path for a in actions] == ["/r/ref-other/x"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["/p/a", "/p/b", "/q/c", "/q/dd", "/e"]),
                       st.integers(1, 4), st.integers(0, 3)),
             min_size=2, max_size=6, unique_by=lambda t: t[0]).filter(
        lambda specs: len({ino for _, ino, _ in specs}) >= 2),
    st.sampled_from(KEEP_POLICIES),
    st.lists(st.sampled_from(["/p", "/q", "/q/c", "/zz"]), max_size=2),
    st.sampled_from(["delete", "hardlink", "symlink"]),
)
def test_plan_never_empties_a_group(specs, keep, keep_paths, op):
    g = group(*specs)
    actions = plan_actions([g], op=op, keep=keep, keep_paths=keep_paths)
    targeted = {a.target.path for a in actions}
    survivors = {e.file_id for e in g.entries if e.path not in targeted}
    assert survivors, "every file of the group would be acted on"
    assert all(a.keep.path not in targeted for a in actions)
    assert all(a.keep.file_id != a.target.file_id for a in actions)
    # Files under a --keep-path are never targets.
    assert not any(a.target.path.startswith(tuple(k + "/" for k in keep_paths)) for a in actions)
