"""--dedupe on real file systems: btrfs and XFS (reflink=1) share extents; ext4 and tmpfs refuse.

Images are made and loop-mounted by the fixtures in conftest.py (as root). Copies are written
with write(), never cp (coreutils 9 reflinks on btrfs by itself), so nothing is shared before
dedup acts; FIEMAP tells whether it did.
"""

from __future__ import annotations

import hashlib
import json
import os

from dedup import extents
from dedup.cli import main
from dedup.pipeline import find_duplicates
from dedup.plan import plan_actions
from dedup.reflink import DIFFERS, already_shared, apply_dedupe

SIZE = 20 * 1024 * 1024 + 4096 * 3 + 123  # over one 16 MiB request, with an unaligned tail
PAST_NS = 1_500_000_000_123_456_789


def write_file(path: str, data: bytes, *, uid: int = 0, gid: int = 0, mode: int = 0o644) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    os.utime(path, ns=(PAST_NS, PAST_NS + hash(path) % 10**9))


def extents_of(path: str) -> list[extents.Extent]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return extents.fiemap(fd)
    finally:
        os.close(fd)


def maybe_extents(path: str) -> list[extents.Extent] | None:
    try:
        return extents_of(path)
    except OSError:  # tmpfs has no FIEMAP either
        return None


def snapshot(path: str) -> tuple:
    st = os.lstat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return (st.st_ino, st.st_dev, st.st_uid, st.st_gid, st.st_mode, st.st_mtime_ns, st.st_size,
            st.st_nlink, digest)


def make_tree(root: str) -> dict[str, str]:
    data = os.urandom(SIZE)
    other = bytearray(data)
    other[SIZE // 2] ^= 0xFF  # same size, one byte apart: never shared
    paths = {name: os.path.join(root, name) for name in ("a", "b", "c", "near")}
    write_file(paths["a"], data)
    write_file(paths["b"], data, uid=1234, gid=5678, mode=0o600)
    write_file(paths["c"], data, uid=42, gid=42, mode=0o755)
    write_file(paths["near"], bytes(other))
    return paths


def run_json(capsysbinary, argv: list[str]) -> tuple[int, dict, str]:
    code = main(argv)
    out, err = capsysbinary.readouterr()
    return code, json.loads(out), err.decode()


def test_apply_shares_extents_and_changes_nothing_else(reflink_dir, capsysbinary):
    paths = make_tree(reflink_dir)
    before = {name: snapshot(p) for name, p in paths.items()}
    assert not already_shared(extents_of(paths["b"]), extents_of(paths["a"]))

    code, doc, err = run_json(capsysbinary, ["--dedupe", "--apply", "--format", "json",
                                             reflink_dir])
    assert code == 0, err
    assert doc["dry_run"] is False
    assert [a["status"] for a in doc["actions"]] == ["done", "done"]
    assert doc["dedupe"]["bytes_shared_now"] == 2 * SIZE
    assert doc["dedupe"]["files_skipped"] == 0
    keep = extents_of(paths["a"])
    for name in ("b", "c"):
        got = extents_of(paths[name])
        assert already_shared(got, keep), (name, got, keep)
        assert all(e.shared for e in got)
    assert not any(e.shared for e in extents_of(paths["near"]))
    after = {name: snapshot(p) for name, p in paths.items()}
    assert after == before  # contents, inodes, owners, modes, mtimes, sizes, link counts

    # A rerun finds the work done: reported as already shared, nothing redone.
    code, doc, _ = run_json(capsysbinary, ["--dedupe", "--apply", "--format", "json", reflink_dir])
    assert code == 0
    assert [a["status"] for a in doc["actions"]] == ["shared", "shared"]
    assert doc["dedupe"]["bytes_already_shared"] == 2 * SIZE
    assert doc["dedupe"]["bytes_shared_now"] == 0


def test_dry_run_compares_and_changes_nothing(reflink_dir, capsysbinary):
    paths = make_tree(reflink_dir)
    before = {name: (snapshot(p), extents_of(p)) for name, p in paths.items()}
    code = main(["--dedupe", reflink_dir])
    out = capsysbinary.readouterr()[0].decode()
    assert code == 0
    assert f"would share {paths['b']} with {paths['a']}" in out
    assert "# dry run:" in out and "nothing changed" in out
    assert {name: (snapshot(p), extents_of(p)) for name, p in paths.items()} == before


def test_file_changed_after_the_scan_with_mtime_kept_comes_back_differs(reflink_dir):
    # fclones #84/#293: content changed, mtime put back. The stat checks cannot see it; the
    # kernel's comparison does. The change is made by the seam between planning and acting.
    paths = make_tree(reflink_dir)
    report = find_duplicates([reflink_dir])
    plan = plan_actions(report.groups, op="dedupe")
    assert [a.target.path for a in plan] == [paths["b"], paths["c"]]

    def change_c(action):
        if action.target.path != paths["c"]:
            return
        st = os.stat(paths["c"])
        with open(paths["c"], "r+b") as f:
            f.seek(SIZE - 10)  # in the last request: earlier ranges are identical and get shared
            f.write(b"CHANGED!!!")
        os.utime(paths["c"], ns=(st.st_atime_ns, st.st_mtime_ns))

    outcome = apply_dedupe(plan, dry_run=False, before_each=change_c)
    b, c = outcome.results
    assert b.status == "done" and b.bytes == SIZE
    assert c.status == "skipped" and c.detail == DIFFERS
    with open(paths["c"], "rb") as f:
        f.seek(SIZE - 10)
        assert f.read() == b"CHANGED!!!"  # the change is kept: the kernel shared nothing there
    tail = [e for e in extents_of(paths["c"]) if e.logical + e.length > SIZE - 10]
    assert tail and not any(e.shared for e in tail)


def test_file_changed_with_new_mtime_is_skipped_before_any_request(reflink_dir):
    paths = make_tree(reflink_dir)
    plan = plan_actions(find_duplicates([reflink_dir]).groups, op="dedupe")
    with open(paths["b"], "r+b") as f:
        f.write(b"x")
    before = extents_of(paths["b"])
    outcome = apply_dedupe(plan, dry_run=False)
    assert [(r.status, r.detail) for r in outcome.results] == [
        ("skipped", "target modified since the scan"), ("done", "")]
    assert extents_of(paths["b"]) == before


def test_hard_links_are_one_request_and_stay_links(reflink_dir, capsysbinary):
    data = os.urandom(300_000)
    a, b = os.path.join(reflink_dir, "a"), os.path.join(reflink_dir, "b")
    write_file(a, data)
    write_file(b, data)
    os.link(b, os.path.join(reflink_dir, "b2"))
    code, doc, _ = run_json(capsysbinary, ["--dedupe", "--apply", "--format", "json", reflink_dir])
    assert code == 0
    assert [x["path"] for x in doc["actions"]] == [b]
    assert os.stat(b).st_nlink == 2 and already_shared(extents_of(b), extents_of(a))


def test_no_ioctl_gives_one_clear_error_per_file_system_and_no_change(noreflink_dir, capsysbinary):
    root, fs_type = noreflink_dir
    data = os.urandom(200_000)
    names = ("a", "b", "c")
    for name in names:
        write_file(os.path.join(root, name), data)
    before = {n: (snapshot(os.path.join(root, n)), maybe_extents(os.path.join(root, n)))
              for n in names}
    code = main(["--dedupe", "--apply", root])
    out, err = (x.decode() for x in capsysbinary.readouterr())
    assert code == 3
    errors = [line for line in err.splitlines() if line.startswith("dedup: error:")]
    assert len(errors) == 1, err  # one line per file system, not one per file
    assert f"{fs_type} file system at {root} cannot share extents" in errors[0]
    assert "needs btrfs, or XFS" in errors[0] and "nothing changed" in errors[0]
    assert sum(line.startswith("skipped ") for line in out.splitlines()) == 2
    after = {n: (snapshot(os.path.join(root, n)), maybe_extents(os.path.join(root, n)))
             for n in names}
    assert after == before


def test_the_kernel_compare_proves_large_groups_without_reading_them(reflink_dir, capsysbinary):
    paths = make_tree(reflink_dir)
    code, doc, err = run_json(capsysbinary, ["--dedupe", "--apply", "--format", "json",
                                             reflink_dir])
    assert code == 0, err
    assert [g["paths"] for g in doc["groups"]] == [[paths["a"], paths["b"], paths["c"]]]
    assert [(a["path"], a["status"]) for a in doc["actions"]] == [
        (paths["b"], "done"), (paths["c"], "done")]
    assert doc["stats"]["bytes_read"] <= 4 * 2 * 4096  # the edges only: the kernel compared
    plain = json.loads(_plain(capsysbinary, reflink_dir))
    assert plain["groups"] == doc["groups"]


def test_a_kept_copy_that_differs_leaves_the_others_a_group_of_their_own(reflink_dir,
                                                                          capsysbinary):
    data = os.urandom(SIZE)
    other = bytearray(data)
    other[SIZE // 3] ^= 0xFF
    a, b, c = (os.path.join(reflink_dir, n) for n in ("a", "b", "c"))
    write_file(a, bytes(other))  # "first": the keeper the plan picks among the candidates
    write_file(b, data)
    write_file(c, data)
    before = snapshot(a)
    for argv in (["--dedupe"], ["--dedupe", "--apply"]):
        code, doc, err = run_json(capsysbinary, [*argv, "--format", "json", reflink_dir])
        assert code == 0, err
        assert [g["paths"] for g in doc["groups"]] == [[b, c]]
        assert [x["path"] for x in doc["actions"]] == [c]
    assert already_shared(extents_of(c), extents_of(b))
    assert snapshot(a) == before and not any(e.shared for e in extents_of(a))


def _plain(capsysbinary, root: str) -> bytes:
    assert main(["--format", "json", root]) == 0
    return capsysbinary.readouterr()[0]
