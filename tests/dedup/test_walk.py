"""The directory walk: one entry per regular file, problems as data, loops and specials safe."""

from __future__ import annotations

import contextlib
import os
import sys
from types import SimpleNamespace

import pytest

from dedup.model import FileEntry, FileProblem
from dedup.walk import WalkCounters, walk
from fixtures.trees import Dir, Fifo, Symlink, build_tree, deep_path


def files_and_problems(*args, **kwargs):
    items = list(walk(*args, **kwargs))
    files = sorted(os.path.relpath(i.path, args[0][0]) for i in items if isinstance(i, FileEntry))
    problems = [i for i in items if isinstance(i, FileProblem)]
    return files, problems


def test_yields_regular_files_and_skips_specials_and_symlinks(tmp_path):
    root = build_tree(tmp_path, {"a": b"1", "d/b": b"2", "d/fifo": Fifo(), "d/ln": Symlink("../a"),
                                 "e": Dir()})
    counts = WalkCounters()
    files, problems = files_and_problems([root], counters=counts)
    assert files == ["a", "d/b"] and problems == []
    assert counts.skipped_special == 1 and counts.skipped_symlinks == 1 and counts.dirs == 3


def test_symlink_loop_is_listed_once_when_following(tmp_path):
    root = build_tree(tmp_path, {"d/f": b"x", "d/loop": Symlink(".."), "d/self": Symlink("self")})
    counts = WalkCounters()
    files, problems = files_and_problems([root], follow_symlinks=True, counters=counts)
    assert files == ["d/f"] and problems == []
    assert counts.dirs_revisited == 1 and counts.skipped_symlinks == 1  # "self" loops: ELOOP


def test_followed_file_symlink_has_the_target_identity(tmp_path):
    root = build_tree(tmp_path, {"f": b"x", "ln": Symlink("f")})
    entries = [e for e in walk([root], follow_symlinks=True) if isinstance(e, FileEntry)]
    assert len({e.file_id for e in entries}) == 1 and len(entries) == 2


def test_repeated_and_overlapping_roots_list_each_directory_once(tmp_path):
    root = build_tree(tmp_path, {"d/f": b"x"})
    entries = list(walk([root, root, os.path.join(root, "d")]))
    assert len(entries) == 1


def test_depth_is_not_limited_by_recursion(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "getrecursionlimit", lambda: 50)  # the walk must not depend on it
    root = build_tree(tmp_path, {deep_path(120, "f"): b"x"})
    files, _ = files_and_problems([root])
    assert files == [deep_path(120, "f")]


def test_unreadable_directory_is_reported_itself_and_the_walk_goes_on(tmp_path):
    root = build_tree(tmp_path, {"locked/f": b"x", "open/g": b"y"})

    def scandir(path):
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return os.scandir(path)

    files, problems = files_and_problems([root], scandir=scandir)
    assert files == ["open/g"]
    assert problems == [FileProblem(os.path.join(root, "locked"), "Permission denied")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 directory anyway")
def test_unreadable_directory_with_real_permissions(tmp_path):
    root = build_tree(tmp_path, {"locked/f": b"x"})
    os.chmod(os.path.join(root, "locked"), 0)
    try:
        _, problems = files_and_problems([root])
    finally:
        os.chmod(os.path.join(root, "locked"), 0o755)
    assert [p.path for p in problems] == [os.path.join(root, "locked")]


def test_file_vanishing_between_listing_and_stat_is_a_problem(tmp_path):
    root = build_tree(tmp_path, {"d/gone": b"x", "d/stays": b"y"})

    class Listing:
        def __init__(self, path):
            with os.scandir(path) as it:
                self.entries = list(it)
            if path.endswith("/d"):
                os.unlink(os.path.join(path, "gone"))

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    files, problems = files_and_problems([root], scandir=Listing)
    assert files == ["d/stays"]
    assert problems == [FileProblem(os.path.join(root, "d", "gone"), "vanished during scan")]


def test_missing_root_is_a_problem_not_an_exception(tmp_path):
    files, problems = files_and_problems([str(tmp_path / "nope")])
    assert files == [] and problems[0].error == "No such file or directory"


class _OtherDevice:
    """A DirEntry stand-in whose stat reports another device (a mount point)."""

    def __init__(self, entry):
        self.entry, self.path, self.name = entry, entry.path, entry.name

    def stat(self, follow_symlinks=True):
        st = self.entry.stat(follow_symlinks=follow_symlinks)
        return SimpleNamespace(st_mode=st.st_mode, st_dev=st.st_dev + 1, st_ino=st.st_ino,
                               st_size=st.st_size, st_mtime_ns=st.st_mtime_ns)


def test_one_file_system_does_not_enter_another_device(tmp_path):
    root = build_tree(tmp_path, {"f": b"x", "mnt/g": b"y"})

    @contextlib.contextmanager
    def scandir(path):
        with os.scandir(path) as it:
            yield [_OtherDevice(e) if e.name == "mnt" else e for e in it]

    assert files_and_problems([root], one_file_system=True, scandir=scandir)[0] == ["f"]
    assert files_and_problems([root], scandir=scandir)[0] == ["f", "mnt/g"]
