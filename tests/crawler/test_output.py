"""The JSONL writer: records appended, a torn last line (kill -9) cut off on reopen."""

from __future__ import annotations

import json

import pytest

from crawler.output import JsonlWriter
from crawler.records import CrawlRecord


def _rec(url: str) -> CrawlRecord:
    return CrawlRecord(url, 200, 0, None, 3, "ab", 1.0)


def test_append_and_torn_tail_is_cut(tmp_path) -> None:
    path = tmp_path / "o.jsonl"
    w = JsonlWriter(str(path))
    w.write(_rec("http://a/1"))
    w.close()
    with open(path, "a") as f:
        f.write('{"url": "http://a/2", "sta')  # torn by a kill
    w = JsonlWriter(str(path))
    w.write(_rec("http://a/3"))
    w.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["url"] for r in lines] == ["http://a/1", "http://a/3"]
    assert set(lines[0]) == {"url", "status", "depth", "referrer", "content_length", "content_hash",
                             "fetch_time", "error", "content_type", "redirect_to", "duplicate_of",
                             "links", "near_duplicate_of", "simhash", "etag", "last_modified"}


def test_only_a_torn_line(tmp_path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text('{"half')
    JsonlWriter(str(path)).close()
    assert path.read_text() == ""


def test_lines_whose_write_failed_are_written_by_the_next_flush(tmp_path) -> None:
    # disk full at a flush: the lines stay buffered, the state is not committed (the caller's
    # flush raised), and the next flush writes them once
    from crawler.output import JsonLines

    path = tmp_path / "o.jsonl"
    lines = JsonLines(str(path))
    lines.write_line('{"n":1}')
    real, calls = lines._file.write, []

    def full(data: bytes) -> int:
        calls.append(data)
        raise OSError(28, "No space left on device")

    lines._file.write = full  # type: ignore[method-assign]
    with pytest.raises(OSError):
        lines.flush()
    lines._file.write = real  # type: ignore[method-assign]
    lines.write_line('{"n":2}')
    lines.close()
    assert calls and path.read_text() == '{"n":1}\n{"n":2}\n'
