"""The dedup command: formats, exit status, error messages, stdin lists, actions from the CLI."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import subprocess
import sys

import pytest

from dedup.cli import main
from fixtures.trees import build_tree


@pytest.fixture
def tree(tmp_path):
    return build_tree(tmp_path / "t", {"a": b"dup\n", "b": b"dup\n", "c": b"other", "d": b"solo!"})


def run(capsysbinary, argv):
    code = main(argv)
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def test_text_report_has_policy_header_groups_and_summary(capsysbinary, tree):
    code, out, err = run(capsysbinary, [tree])
    text = out.decode()
    assert code == 0 and err == ""
    assert "# empty files: ignored" in text and "# symlinks: not followed" in text
    assert "# hash: mmh3" in text and "# hard links:" in text
    assert f"    {tree}/a\n    {tree}/b\n" in text
    assert "1 duplicate groups" in text.splitlines()[-1]


def test_json_report_has_the_design_shape(capsysbinary, tree):
    code, out, err = run(capsysbinary, ["--format", "json", tree])
    doc = json.loads(out)
    assert code == 0 and set(doc) == {"groups", "errors", "stats"}
    assert doc["groups"] == [{"size": 4, "paths": [f"{tree}/a", f"{tree}/b"]}]
    assert doc["errors"] == [] and doc["stats"]["groups"] == 1
    assert "1 duplicate groups" in err  # the summary goes to stderr


def test_csv_report_lists_one_row_per_path(capsysbinary, tree):
    code, out, _ = run(capsysbinary, ["--format", "csv", tree])
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert code == 0
    assert rows == [["group", "size", "file", "path"], ["1", "4", "1", f"{tree}/a"],
                    ["1", "4", "2", f"{tree}/b"]]


def test_csv_keeps_exact_bytes_of_odd_names(capsysbinary, tmp_path):
    root = build_tree(tmp_path, {b"x\xff,\n": b"same", "y": b"same"})
    _, out, _ = run(capsysbinary, ["--format", "csv", root])
    assert b'"' + os.fsencode(root) + b'/x\xff,\n"' in out


def test_null_separated_output_ends_each_path_and_group(capsysbinary, tree, tmp_path):
    code, out, _ = run(capsysbinary, ["-0", tree])
    assert code == 0
    assert out == f"{tree}/a\0{tree}/b\0\0".encode()


def test_text_quotes_names_with_newlines_so_one_path_is_one_line(capsysbinary, tmp_path):
    root = build_tree(tmp_path, {"new\nline": b"z", "tab\tx": b"z", b"bad\xff": b"z"})
    _, out, _ = run(capsysbinary, [root])
    text = out.decode()
    assert f"$'{root}/new\\nline'" in text and f"$'{root}/tab\\tx'" in text
    assert f"$'{root}/bad\\xff'" in text


def test_unreadable_file_gives_exit_3_a_warning_and_an_error_entry(capsysbinary, tree, monkeypatch):
    from dedup import hashing

    real = hashing.open_for_read

    def opener(path):
        if path.endswith("/b"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(hashing, "open_for_read", opener)
    code, out, err = run(capsysbinary, ["--format", "json", tree])
    assert code == 3
    assert json.loads(out)["errors"] == [{"path": f"{tree}/b", "error": "Permission denied"}]
    assert f"dedup: warning: {tree}/b: Permission denied" in err


def test_warnings_show_once_per_run_and_not_with_quiet(capsysbinary, tmp_path):
    # The stderr handler is made at a run's first warning (dedup.warn), and gone after the run.
    from dedup import warn

    missing = str(tmp_path / "nope")
    for argv, shown in (([missing], 1), (["-q", missing], 0), ([missing], 1)):
        code, _, err = run(capsysbinary, argv)
        assert code == 3 and err.count(f"dedup: warning: {missing}:") == shown
    code, _, err = run(capsysbinary, [str(tmp_path)])  # no warning: nothing set up, none left
    assert code == 0 and "warning" not in err and not warn._setups


def test_missing_path_gives_exit_3_and_is_listed(capsysbinary, tmp_path):
    code, out, err = run(capsysbinary, ["--format", "json", str(tmp_path / "nope")])
    assert code == 3 and json.loads(out)["errors"][0]["path"] == str(tmp_path / "nope")
    assert "No such file or directory" in err


@pytest.mark.parametrize("argv, message", [
    (["--format", "xml", "x"], "invalid choice: 'xml'"),
    (["--min-size", "lots", "x"], "invalid size 'lots'"),
    (["--threads", "0", "x"], "must be a whole number >= 1"),
    (["--delete", "--link", "hard", "x"], "not allowed with argument"),
    (["--apply", "x"], "--apply needs --delete, --link or --dedupe"),
    ([], "the following arguments are required: PATH"),
])
def test_usage_errors_exit_2_with_one_line_message(capsysbinary, argv, message):
    code, out, err = run(capsysbinary, argv)
    assert code == 2 and out == b""
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("dedup: error:")


def test_min_above_max_is_a_usage_error(capsysbinary, tree):
    code, _, err = run(capsysbinary, ["--min-size", "10", "--max-size", "5", tree])
    assert code == 2 and err.strip() == "dedup: error: --max-size must be >= --min-size"


def test_help_lists_exit_codes(capsysbinary):
    code, out, _ = run(capsysbinary, ["--help"])
    text = out.decode()
    assert code == 0 and "exit status:" in text and "130" in text and "  3 " in text


def test_file_list_on_stdin(capsysbinary, tree, monkeypatch):
    listing = f"{tree}/a\n{tree}/b\n{tree}/c\n".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(listing)))
    code, out, _ = run(capsysbinary, ["-"])
    assert code == 0 and f"    {tree}/a\n    {tree}/b\n".encode() in out


def test_null_separated_file_list_on_stdin(capsysbinary, tmp_path, monkeypatch):
    root = build_tree(tmp_path, {"new\nline": b"q", "other": b"q"})
    listing = f"{root}/new\nline\0{root}/other\0".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(listing)))
    code, out, _ = run(capsysbinary, ["-0", "-"])
    assert code == 0 and out == f"{root}/new\nline\0{root}/other\0\0".encode()


def test_path_with_leading_dash_after_double_dash(capsysbinary, tmp_path, monkeypatch):
    build_tree(tmp_path, {"-d/x": b"1", "-d/y": b"1"})
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsysbinary, ["-0", "--", "-d"])
    assert code == 0 and out == b"-d/x\0-d/y\0\0"


def test_delete_is_a_dry_run_by_default_and_says_so(capsysbinary, tree):
    code, out, _ = run(capsysbinary, ["--delete", tree])
    text = out.decode()
    assert code == 0 and os.path.exists(f"{tree}/b")
    assert f"would delete {tree}/b (same as {tree}/a)" in text
    assert "nothing changed" in text


def test_dry_run_lists_exactly_what_apply_does(capsysbinary, tree):
    _, dry, _ = run(capsysbinary, ["--link", "hard", "--format", "json", tree])
    code, done, _ = run(capsysbinary, ["--link", "hard", "--apply", "--format", "json", tree])
    planned = [(a["op"], a["path"], a["keep"]) for a in json.loads(dry)["actions"]]
    applied = [(a["op"], a["path"], a["keep"]) for a in json.loads(done)["actions"]]
    assert code == 0 and planned == applied == [("hardlink", f"{tree}/b", f"{tree}/a")]
    assert os.stat(f"{tree}/a").st_ino == os.stat(f"{tree}/b").st_ino


def test_apply_delete_with_keep_newest(capsysbinary, tree):
    os.utime(f"{tree}/a", ns=(1, 1_000_000_000))
    code, out, _ = run(capsysbinary, ["--delete", "--apply", "--keep", "newest", tree])
    assert code == 0 and os.path.exists(f"{tree}/b") and not os.path.exists(f"{tree}/a")
    assert f"deleted {tree}/a (same as {tree}/b)" in out.decode()


def test_keep_path_is_never_touched(capsysbinary, tmp_path):
    root = build_tree(tmp_path, {"ref/x": b"same", "work/y": b"same", "work/z": b"same"})
    code, _, _ = run(capsysbinary, ["--delete", "--apply", "--keep-path", f"{root}/ref",
                                    f"{root}/work", f"{root}/ref"])
    assert code == 0 and sorted(os.listdir(f"{root}/work")) == []
    assert os.listdir(f"{root}/ref") == ["x"]


def test_broken_pipe_exits_quietly(tmp_path):
    spec = {f"d{i}/f": b"same" for i in range(3000)}
    root = build_tree(tmp_path, spec)
    proc = subprocess.run(f"{sys.executable} -m dedup {root} | head -c 10 > /dev/null",
                          shell=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))),
                          executable="/bin/bash")
    assert proc.stderr == b""


def test_python_dash_m_dedup_runs(tree):
    proc = subprocess.run([sys.executable, "-m", "dedup", "-0", tree], capture_output=True)
    assert proc.returncode == 0 and proc.stdout == f"{tree}/a\0{tree}/b\0\0".encode()


@pytest.mark.parametrize("apply", [False, True])
def test_dry_run_and_apply_report_a_file_changed_after_the_scan_alike(capsysbinary, tree,
                                                                    monkeypatch, apply):
    from dedup import cli

    real = cli.find_duplicates

    def scan_then_change(*args, **kwargs):
        report = real(*args, **kwargs)
        with open(f"{tree}/b", "ab") as f:
            f.write(b"changed after the scan")
        return report

    monkeypatch.setattr(cli, "find_duplicates", scan_then_change)
    code, out, _ = run(capsysbinary, ["--delete", tree] + (["--apply"] if apply else []))
    text = out.decode()
    assert code == 3 and os.path.exists(f"{tree}/b")
    assert f"skipped {tree}/b: target modified since the scan" in text
    assert ("# 0 of 1 actions done" if apply else "0 of 1 actions would be done") in text


def test_a_run_that_warns_of_nothing_imports_neither_logging_nor_thread_pools(tmp_path):
    # Both cost every command-line run about 8 ms (python -X importtime): they are imported
    # where they are used (the first warning, a pool's first job), never for annotations. Nor
    # does a plain run import typing, argparse, re and the rest below (dedup/__init__.py,
    # dedup.plainargs): about 10 ms of a 40 ms start. What the interpreter had before does not
    # count (the editable install's import finder, loaded by site, brings re, enum, importlib).
    head = b"h" * 64
    root = build_tree(tmp_path / "t", {
        "a": b"dup\n", "b": b"dup\n",
        "m1": head + b"x" * 3000, "m2": head + b"x" * 3000, "m3": head + b"y" * 3000,
        "big1": b"L" * (3 << 20), "big2": b"L" * (3 << 20)})
    code = ("import sys; before = set(sys.modules); from dedup.cli import main; "
            "main(['-q', '-0', sys.argv[1]]); "
            "print([m for m in ('logging', 'concurrent.futures', 'typing', 'argparse', 're', "
            "'gettext', 'locale', 'threading', 'enum', 'signal', 'importlib', 'fnmatch') "
            "if m in sys.modules and m not in before], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0 and done.stderr == "[]\n"
    assert done.stdout.count("\0\0") == 3  # the three groups were found


@pytest.mark.parametrize("exit_code", [0, 3])
def test_the_command_ends_the_process_when_done_and_a_call_with_argv_returns(tmp_path,
                                                                             exit_code):
    # The interpreter's shutdown cost 5.6 ms a run: the command (main() without argv) ends the
    # process itself once its report is out, with the run's exit status (3: a path missing);
    # a caller passing argv gets the status back and its heap as it was (tests, embedding
    # programs). An interrupted or failed command still returns (its status then exits).
    root = build_tree(tmp_path / "t", {"a": b"dup\n", "b": b"dup\n"})
    paths = [root] if exit_code == 0 else [root, str(tmp_path / "missing")]
    code = ("import gc, sys; from dedup.cli import main; how, *paths = sys.argv[1:]; "
            "sys.argv = ['dedup', '-q', '-0', *paths]; "
            "code = main() if how == 'command' else main(['-q', '-0', *paths]); "
            "print('returned', code, gc.get_freeze_count() > 0, gc.isenabled(), "
            "file=sys.stderr)")
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    for how, status, returned in (("command", exit_code, ""),
                                  ("call", 0, f"returned {exit_code} False True\n")):
        done = subprocess.run([sys.executable, "-c", code, how, *paths], capture_output=True,
                              text=True, cwd=cwd)
        assert done.returncode == status and done.stderr == returned, (how, done.stderr)
        assert done.stdout.count("\0\0") == 1
    before = gc.get_freeze_count()
    assert main(["-q", "-0", root]) == 0
    assert gc.get_freeze_count() == before


def test_the_command_under_a_profiler_exits_normally_and_keeps_its_results(tmp_path):
    # cProfile -o and coverage write their results as the interpreter exits: the command's
    # os._exit would lose them, so it returns when a profiler or tracer is set.
    root = build_tree(tmp_path / "t", {"a": b"dup\n", "b": b"dup\n"})
    out = tmp_path / "profile.out"
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "dedup", "-q", "-0", root],
                          capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0 and done.stdout.count("\0\0") == 1
    assert out.stat().st_size > 0
