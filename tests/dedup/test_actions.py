"""Applying a plan: re-stat and byte checks right before acting, atomic replace, never the last copy."""

from __future__ import annotations

import os

import pytest

from dedup import ScanOptions, apply_actions, find_duplicates, plan_actions
from fixtures.trees import Fifo, Symlink, build_tree


def plan_for(root, op="delete", keep="first"):
    report = find_duplicates([root])
    return plan_actions(report.groups, op=op, keep=keep)


@pytest.fixture
def pair(tmp_path):
    return build_tree(tmp_path / "p", {"a": b"payload\n" * 10, "b": b"payload\n" * 10})


def test_dry_run_touches_nothing(pair):
    results = apply_actions(plan_for(pair), dry_run=True)
    assert [r.status for r in results] == ["planned"]
    assert sorted(os.listdir(pair)) == ["a", "b"]


def test_delete_removes_the_duplicate_and_keeps_the_first(pair):
    results = apply_actions(plan_for(pair), dry_run=False)
    assert [r.status for r in results] == ["done"] and os.listdir(pair) == ["a"]


@pytest.mark.parametrize("op", ["hardlink", "symlink"])
def test_link_replaces_atomically_without_leaving_temp_files(pair, op):
    results = apply_actions(plan_for(pair, op), dry_run=False)
    assert [r.status for r in results] == ["done"]
    assert sorted(os.listdir(pair)) == ["a", "b"]  # no .dedup-*.tmp left behind
    if op == "hardlink":
        assert os.stat(f"{pair}/a").st_ino == os.stat(f"{pair}/b").st_ino
    else:
        assert os.readlink(f"{pair}/b") == f"{pair}/a"
    with open(f"{pair}/b", "rb") as f:
        assert f.read() == b"payload\n" * 10


def test_file_changed_between_hashing_and_acting_is_skipped(pair):
    plan = plan_for(pair)
    with open(f"{pair}/b", "ab") as f:
        f.write(b"new data")
    results = apply_actions(plan, dry_run=False)
    assert [(r.status, r.detail) for r in results] == [("skipped", "target modified since the scan")]
    assert sorted(os.listdir(pair)) == ["a", "b"]


def test_same_size_rewrite_with_restored_mtime_is_caught_by_the_byte_check(pair):
    plan = plan_for(pair)
    st = os.stat(f"{pair}/b")
    with open(f"{pair}/b", "r+b") as f:
        f.write(b"X")
    os.utime(f"{pair}/b", ns=(st.st_atime_ns, st.st_mtime_ns))
    results = apply_actions(plan, dry_run=False)
    assert [(r.status, r.detail) for r in results] == [
        ("skipped", "content differs from the kept copy")]
    assert os.path.exists(f"{pair}/b")


def test_apply_never_removes_the_last_copy_when_the_kept_one_vanished(pair):
    plan = plan_for(pair)
    os.unlink(f"{pair}/a")  # the kept copy disappears after the scan
    results = apply_actions(plan, dry_run=False)
    assert results[0].status == "skipped" and results[0].detail.startswith("kept copy")
    assert os.listdir(pair) == ["b"]


def test_apply_never_removes_the_last_copy_when_the_kept_one_was_replaced(pair):
    plan = plan_for(pair)
    os.unlink(f"{pair}/a")
    os.link(f"{pair}/b", f"{pair}/a")  # now a and b are one file: deleting b keeps one copy,
    results = apply_actions(plan, dry_run=False)  # but identity changed, so dedup refuses
    assert results[0].status == "skipped" and os.path.exists(f"{pair}/b")


def test_every_copy_in_a_group_survives_a_full_apply(tmp_path):
    spec = {f"d{i}/f": b"same bytes" for i in range(6)}
    root = build_tree(tmp_path, spec)
    results = apply_actions(plan_for(root), dry_run=False)
    assert [r.status for r in results] == ["done"] * 5
    remaining = [d for d in os.listdir(root) if os.listdir(os.path.join(root, d))]
    assert remaining == ["d0"]


def test_read_error_during_verification_skips_the_action(pair, make_failing_opener):
    plan = plan_for(pair)
    results = apply_actions(plan, dry_run=False, opener=make_failing_opener(["b"]))
    assert results[0].status == "skipped" and "Permission denied" in results[0].detail
    assert sorted(os.listdir(pair)) == ["a", "b"]


def test_target_replaced_by_a_fifo_is_skipped_not_opened(pair):
    plan = plan_for(pair)
    os.unlink(f"{pair}/b")
    build_tree(pair, {"b": Fifo()})
    results = apply_actions(plan, dry_run=False)
    assert results[0].status == "skipped" and "regular file" in results[0].detail


def test_symlinked_path_is_never_deleted_in_place_of_a_file(tmp_path):
    root = build_tree(tmp_path, {"a": b"zz", "b": b"zz", "s": Symlink("b")})
    report = find_duplicates([root], ScanOptions(follow_symlinks=True))
    plan = plan_actions(report.groups, op="delete", keep="first")
    results = apply_actions(plan, dry_run=False)
    by_path = {os.path.basename(r.action.target.path): r.status for r in results}
    assert by_path == {"b": "done", "s": "skipped"}
    assert os.path.exists(f"{root}/a")


def _rewrite_same_size_keeping_mtime(path):
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(b"X")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("change", ["append", "same-size rewrite", "kept copy gone"])
def test_dry_run_makes_the_checks_apply_makes_and_reports_the_same(tmp_path, change):
    # Two identical trees, one changed the same way after the scan: the dry run on one must say
    # what --apply then does on the other, and change nothing itself.
    results = {}
    for mode in ("dry", "apply"):
        root = build_tree(tmp_path / mode, {"a": b"payload\n" * 10, "b": b"payload\n" * 10})
        plan = plan_for(root)
        if change == "append":
            with open(f"{root}/b", "ab") as f:
                f.write(b"more")
        elif change == "same-size rewrite":
            _rewrite_same_size_keeping_mtime(f"{root}/b")
        else:
            os.unlink(f"{root}/a")
        before = sorted(os.listdir(root))
        got = apply_actions(plan, dry_run=mode == "dry")
        results[mode] = [(r.status, r.detail) for r in got]
        assert sorted(os.listdir(root)) == before  # every check refused: nothing changed
    assert results["dry"] == results["apply"] and results["dry"][0][0] == "skipped"


def test_dry_run_reads_both_files_to_compare_them(pair, make_failing_opener):
    results = apply_actions(plan_for(pair), dry_run=True, opener=make_failing_opener(["b"]))
    assert results[0].status == "skipped" and "Permission denied" in results[0].detail


def test_hard_link_across_devices_is_blocked_at_planning_and_never_tried(pair):
    report = find_duplicates([pair])
    group = report.groups[0]
    keep, other = group.entries
    moved = other._replace(dev=other.dev + 1)  # as if b sat on another mount
    crossed = type(group)(group.size, (keep, moved))
    plan = plan_actions([crossed], op="hardlink")
    assert plan[0].blocked and "cannot cross devices" in plan[0].blocked
    for dry_run in (True, False):
        results = apply_actions(plan, dry_run=dry_run)
        assert [(r.status, r.detail) for r in results] == [("skipped", plan[0].blocked)]
    assert os.stat(f"{pair}/a").st_ino != os.stat(f"{pair}/b").st_ino
    # Deleting or symlinking across devices is fine: only hard links are blocked.
    assert not plan_actions([crossed], op="delete")[0].blocked
    assert not plan_actions([crossed], op="symlink")[0].blocked


def test_a_file_whose_time_the_table_clamps_is_acted_on(tmp_path):
    # Past 2262 the scan keeps the nearest time an int64 of nanoseconds holds; the check before
    # acting compares the file's time clamped the same way (the bytes are compared as ever).
    root = build_tree(tmp_path / "f", {"a": b"far future\n" * 5, "b": b"far future\n" * 5})
    for name in ("a", "b"):
        os.utime(f"{root}/{name}", ns=(0, 10**19))
    if os.stat(f"{root}/b").st_mtime_ns != 10**19:
        pytest.skip("this file system does not hold the time")
    results = apply_actions(plan_for(root), dry_run=False)
    assert [(r.status, r.detail) for r in results] == [("done", "")]
    assert os.listdir(root) == ["a"]
