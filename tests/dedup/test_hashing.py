"""Reading files: both-ends partial keys, streaming digests, changed files, the opener seam."""

from __future__ import annotations

import hashlib

import mmh3
import pytest

from dedup import hashing
from dedup.errors import FileChangedError
from dedup.hashing import full_digest, open_for_read, partial_digest
from fixtures.trees import Fifo, build_tree


def test_small_file_partial_digest_is_the_whole_content_hash(tmp_path):
    root = build_tree(tmp_path, {"f": b"abc" * 100})
    digest, nbytes = partial_digest(f"{root}/f", 300, "sha256", open_for_read)
    assert digest == hashlib.sha256(b"abc" * 100).digest() and nbytes == 300


def test_large_file_partial_reads_only_both_ends(tmp_path):
    size = hashing.WHOLE_LIMIT + 10_000
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    root = build_tree(tmp_path, {"f": data})
    _, nbytes = partial_digest(f"{root}/f", size, "mmh3", open_for_read)
    assert nbytes == 2 * hashing.EDGE


def test_partial_tells_apart_files_differing_only_in_the_last_byte(tmp_path):
    size = hashing.WHOLE_LIMIT + 1
    root = build_tree(tmp_path, {"a": b"\0" * size, "b": b"\0" * (size - 1) + b"\1"})
    a = partial_digest(f"{root}/a", size, "mmh3", open_for_read)[0]
    b = partial_digest(f"{root}/b", size, "mmh3", open_for_read)[0]
    assert a != b


@pytest.mark.parametrize("name", ["mmh3", "sha256", "blake2b"])
def test_full_digest_streams_in_chunks_to_the_one_shot_value(tmp_path, monkeypatch, name):
    monkeypatch.setattr(hashing, "CHUNK", 1000)
    data = bytes(range(256)) * 40
    root = build_tree(tmp_path, {"f": data})
    digest, nbytes = full_digest(f"{root}/f", len(data), name, open_for_read)
    expected = {"mmh3": mmh3.mmh3_x64_128_digest(data), "sha256": hashlib.sha256(data).digest(),
                "blake2b": hashlib.blake2b(data, digest_size=32).digest()}[name]
    assert digest == expected and nbytes == len(data)


@pytest.mark.parametrize("fn", [partial_digest, full_digest])
@pytest.mark.parametrize("actual", [5, 7])
def test_a_file_whose_size_changed_since_the_scan_raises(tmp_path, fn, actual):
    root = build_tree(tmp_path, {"f": b"x" * actual})
    with pytest.raises(FileChangedError, match="changed during scan"):
        fn(f"{root}/f", 6, "mmh3", open_for_read)


def test_truncated_large_file_is_an_error_not_a_crash(tmp_path):
    size = hashing.WHOLE_LIMIT * 2
    root = build_tree(tmp_path, {"f": b"y" * (size // 2)})  # the scan saw twice this size
    with pytest.raises(FileChangedError, match="shrank"):
        partial_digest(f"{root}/f", size, "mmh3", open_for_read)


def test_open_for_read_refuses_a_fifo_without_blocking(tmp_path):
    root = build_tree(tmp_path, {"p": Fifo()})
    with pytest.raises(FileChangedError, match="no longer a regular file"):
        open_for_read(f"{root}/p")


def test_opener_seam_errors_propagate_as_oserror(tmp_path):
    def opener(path):
        raise PermissionError(13, "Permission denied", path)

    with pytest.raises(PermissionError):
        full_digest(str(tmp_path / "x"), 1, "mmh3", opener)
