"""The stderr progress line, Ctrl-C handling, hash choices at the CLI, and the demo section."""

from __future__ import annotations

import io
import json
import os
import tempfile

import fixtures.demo.dedup as demo
from dedup import cli
from dedup.progress import ProgressLine
from fixtures.trees import build_tree


def test_progress_line_rewrites_one_line_and_is_erased_at_the_end():
    stream = io.StringIO()
    line = ProgressLine(stream, interval=3600)
    line("scan", 10, 0)
    line("scan", 20, 0)  # throttled: same phase, not finished, within the interval
    line("full", 5 * 2**20, 10 * 2**20)
    line.finish()
    text = stream.getvalue()
    assert "scanning: 10 files" in text and "20 files" not in text
    assert "full hashes: 5.0 MiB/10.0 MiB" in text
    assert "\n" not in text and text.endswith("\r\x1b[K")


def test_progress_is_silent_when_stderr_is_not_a_terminal(tmp_path, capsys):
    root = build_tree(tmp_path, {"a": b"x", "b": b"x"})
    assert cli.main(["--format", "json", root]) == 0
    assert "\r" not in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "find_duplicates", interrupted)
    assert cli.main([str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "dedup: interrupted"


def test_hash_and_verify_choices_give_the_same_groups_and_say_so(tmp_path, capsys):
    root = build_tree(tmp_path, {"a": b"q" * 100_000, "b": b"q" * 100_000, "c": b"r" * 100_000})
    results = []
    for extra in ([], ["--hash", "sha256"], ["--hash", "blake2b", "--verify"]):
        assert cli.main(["--format", "json", *extra, root]) == 0
        results.append(json.loads(capsys.readouterr().out)["groups"])
    assert results[0] == results[1] == results[2] == [
        {"size": 100_000, "paths": [f"{root}/a", f"{root}/b"]}]
    cli.main(["--hash", "blake2b", "--verify", root])
    assert "# hash: blake2b + byte-for-byte verify" in capsys.readouterr().out


def test_demo_prints_a_report_and_a_dry_run_and_cleans_up(capsys):
    before = set(os.listdir(tempfile.gettempdir()))
    demo.main()
    out = capsys.readouterr().out
    assert "would delete" in out and "nothing changed" in out
    assert "edited.jpg" not in out  # the last-byte trap is in no group
    assert set(os.listdir(tempfile.gettempdir())) - before == set()
