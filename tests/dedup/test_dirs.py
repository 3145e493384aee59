"""--dirs: duplicate directories (same relative paths, identical contents), topmost only."""

from __future__ import annotations

import csv
import io
import json
import os

from dedup.cli import main
from dedup.extras import Extras
from dedup.options import ScanOptions
from dedup.pipeline import find_duplicates
from fixtures.trees import Dir, HardLink, Symlink, build_tree

BIG = b"big file\n" * 1000


def project(prefix: str) -> dict:
    return {f"{prefix}/readme": b"hello\n", f"{prefix}/src/main.c": b"int main;\n",
            f"{prefix}/src/big": BIG, f"{prefix}/empty.txt": b"", f"{prefix}/cache": Dir()}


def run(capsysbinary, argv):
    code = main(argv)
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def dirs_of(capsysbinary, root, *extra):
    code, out, err = run(capsysbinary, ["--dirs", "--format", "json", *extra, root])
    assert code == 0, err
    doc = json.loads(out)
    strip = len(root) + 1
    return ([sorted(p[strip:] for p in d["paths"]) for d in doc["dirs"]], doc)


def test_nested_copies_report_only_the_topmost(tmp_path, capsysbinary):
    root = build_tree(tmp_path / "t", {**project("a"), **project("b"), **project("c/deep"),
                                       "lone": b"x"})
    found, doc = dirs_of(capsysbinary, root)
    assert found == [["a", "b", "c/deep"]]  # a/src, b/src, c/deep/src are inside: not repeated
    d = doc["dirs"][0]
    assert d["files"] == 4 and d["size"] == len(b"hello\n") + len(b"int main;\n") + len(BIG)
    # Every group lies inside the duplicate directories: folded in, not repeated in "groups".
    assert doc["groups"] == []


def test_partial_copy_is_not_a_duplicate_but_its_identical_subtree_is(tmp_path, capsysbinary):
    spec = {**project("a"), **project("b")}
    spec["b/readme"] = b"HELLO\n"  # one file differs
    root = build_tree(tmp_path / "t", spec)
    found, doc = dirs_of(capsysbinary, root)
    assert found == [["a/src", "b/src"]]
    # The src files are folded into the directories; nothing else is duplicated.
    assert doc["groups"] == []


def test_renamed_copy_is_not_a_duplicate(tmp_path, capsysbinary):
    spec = {**project("a"), **project("b")}
    del spec["b/src/main.c"]
    spec["b/src/main2.c"] = b"int main;\n"
    root = build_tree(tmp_path / "t", spec)
    found, doc = dirs_of(capsysbinary, root)
    assert found == []
    # The files are still duplicates, reported as groups.
    assert {os.path.basename(p) for g in doc["groups"] for p in g["paths"]} >= {"main.c", "main2.c"}


def test_empty_files_and_directories_count_as_entries(tmp_path, capsysbinary):
    spec = {**project("a"), **project("b"), **project("c")}
    del spec["b/cache"]  # an empty directory missing
    del spec["c/empty.txt"]  # an empty file missing
    root = build_tree(tmp_path / "t", spec)
    found, _ = dirs_of(capsysbinary, root)
    assert found == [["a/src", "b/src", "c/src"]]


def test_empty_directories_alone_are_not_reported(tmp_path, capsysbinary):
    root = build_tree(tmp_path / "t", {"x/e": Dir(), "y/e": Dir(), "z": Dir()})
    found, _ = dirs_of(capsysbinary, root)
    assert found == []


def test_symlinks_inside_compare_by_target_text(tmp_path, capsysbinary):
    spec = {**project("a"), **project("b"), **project("c")}
    spec["a/src/link"] = Symlink("../readme")
    spec["b/src/link"] = Symlink("../readme")
    spec["c/src/link"] = Symlink("/etc/passwd")
    root = build_tree(tmp_path / "t", spec)
    found, _ = dirs_of(capsysbinary, root)
    assert found == [["a", "b"]]


def test_hard_links_count_as_the_same_content(tmp_path, capsysbinary):
    spec = {"a/only": b"unique content", "b/only": HardLink("a/only")}
    root = build_tree(tmp_path / "t", spec)
    found, _ = dirs_of(capsysbinary, root)
    assert found == [["a", "b"]]


def test_group_with_a_copy_outside_is_not_folded(tmp_path, capsysbinary):
    root = build_tree(tmp_path / "t", {**project("a"), **project("b"), "elsewhere/big": BIG})
    found, doc = dirs_of(capsysbinary, root)
    assert found == [["a", "b"]]
    assert [sorted(os.path.relpath(p, root) for p in g["paths"]) for g in doc["groups"]] == [
        ["a/src/big", "b/src/big", "elsewhere/big"]]


def test_text_and_csv_show_the_directories(tmp_path, capsysbinary):
    root = build_tree(tmp_path / "t", {**project("a"), **project("b")})
    code, out, _ = run(capsysbinary, ["--dirs", root])
    text = out.decode()
    assert code == 0
    assert "in 4 files x 2 directories:" in text
    assert f"    {root}/a/\n    {root}/b/\n" in text
    assert "1 duplicate directory groups" in text
    code, out, _ = run(capsysbinary, ["--dirs", "--format", "csv", root])
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert rows[0] == ["kind", "group", "size", "file", "path"]
    assert [r[0] for r in rows[1:]] == ["dir", "dir"]
    assert rows[1][4] == f"{root}/a" and rows[1][3] == "4"


def test_actions_with_dirs_act_file_by_file_with_every_check(tmp_path, capsysbinary):
    root = build_tree(tmp_path / "t", {**project("a"), **project("b")})
    code, out, err = run(capsysbinary, ["--dirs", "--delete", "--format", "json", root])
    doc = json.loads(out)
    assert code == 0, err
    assert doc["dry_run"] is True
    assert sorted(os.path.relpath(a["path"], root) for a in doc["actions"]) == [
        "b/readme", "b/src/big", "b/src/main.c"]
    assert all(a["status"] == "planned" for a in doc["actions"])
    with open(os.path.join(root, "b/readme"), "wb") as f:
        f.write(b"HELLo\n")  # b/readme is no duplicate any more: b is no copy of a
    code, out, _ = run(capsysbinary, ["--dirs", "--delete", "--apply", "--format", "json", root])
    doc = json.loads(out)
    assert code == 0
    assert sorted(os.path.relpath(a["path"], root) for a in doc["actions"]) == [
        "b/src/big", "b/src/main.c"]
    assert os.path.exists(os.path.join(root, "a/src/big"))
    assert not os.path.exists(os.path.join(root, "b/src/big"))
    assert os.path.exists(os.path.join(root, "b/readme"))


def test_excluded_entries_are_absent_not_different(tmp_path, capsysbinary):
    spec = {**project("a"), **project("b"), "a/build.log": b"noise\n"}
    root = build_tree(tmp_path / "t", spec)
    assert dirs_of(capsysbinary, root)[0] == [["a/src", "b/src"]]
    assert dirs_of(capsysbinary, root, "--exclude", "*.log")[0] == [["a", "b"]]


def test_directories_come_from_the_scan_itself_listed_once(tmp_path):
    root = build_tree(tmp_path / "t", {**project("a"), **project("b"), "c/x": b"x"})
    listed: list[str] = []

    def scandir(path):
        listed.append(path)
        return os.scandir(path)

    options = ScanOptions()
    with Extras([root], options, dirs=True, similar=False) as extras:
        report = extras.finish(find_duplicates([root], options, scandir=scandir, extras=extras))
    assert [sorted(os.path.relpath(p, root) for p in d.paths) for d in report.dirs] == [["a", "b"]]
    assert sorted(listed) == sorted(set(listed))  # no directory listed twice: no second walk
    assert len(listed) == report.stats.dirs == 8  # t, a, a/src, a/cache, b, b/src, b/cache, c


def test_directories_sharing_some_files_are_not_duplicates(tmp_path, capsysbinary):
    # Every directory here holds a duplicate: the merge reads each one's full listing after the
    # scan, whatever the scan freed once its groups were built.
    spec = {}
    for d in range(30):
        spec[f"d{d}/shared"] = BIG
        spec[f"d{d}/own"] = b"own %d\n" % d
    root = build_tree(tmp_path / "t", spec)
    found, doc = dirs_of(capsysbinary, root)
    assert found == []
    assert len(doc["groups"]) == 1 and len(doc["groups"][0]["paths"]) == 30
