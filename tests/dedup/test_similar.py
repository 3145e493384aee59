"""--similar: files built with known shared regions; shared bytes within one average chunk."""

from __future__ import annotations

import json
import os
import random

import pytest

from dedup.cli import main
from dedup.options import ScanOptions
from dedup.similar import (
    AVG_CHUNK,
    LEVEL,
    MAX_CHUNK,
    MIN_CHUNK,
    chunk_file,
    find_similar,
    pack_chunks,
    shared_bytes,
    similar_pairs,
    unpack_chunks,
)

MiB = 1024 * 1024
# "One average chunk": dedup's chunks average about 64 KiB on random bytes (bench/RESULTS.md,
# 4,126 chunks in 256 MiB); pyfastcdc's bound avg + min is 96 KiB. The tests hold 60 KiB.
MEAN_CHUNK = AVG_CHUNK + AVG_CHUNK // 4


def rand(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


@pytest.fixture
def edited(tmp_path):
    """Write a base file and edited versions; return the root and the true shared bytes."""
    rng = random.Random(1919)
    base = b"".join(rand(rng, MiB) for _ in range(6))
    files = {
        "base": base,
        "inserted": base[: 2 * MiB] + rand(rng, 5000) + base[2 * MiB:],
        "deleted": base[: 3 * MiB + 77] + base[3 * MiB + 77 + 40_000:],
        "shifted": base[4 * MiB + 1234:] + base[: 4 * MiB + 1234],
        "unrelated": rand(rng, 6 * MiB),
        "copy": base,
    }
    root = tmp_path / "t"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    truth = {
        ("base", "inserted"): len(base),
        ("base", "deleted"): len(files["deleted"]),
        ("base", "shifted"): len(base),
        ("deleted", "inserted"): len(files["deleted"]),
        ("inserted", "shifted"): len(base),
        ("deleted", "shifted"): len(files["deleted"]),
    }
    return str(root), truth


def run_json(capsysbinary, argv):
    code = main(argv)
    out, err = capsysbinary.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_shared_bytes_within_one_average_chunk_of_the_truth(edited, capsysbinary):
    root, truth = edited
    doc = run_json(capsysbinary, ["--similar", "--format", "json", root])
    got = {tuple(sorted(os.path.basename(p) for p in pair["paths"])): pair
           for pair in doc["similar"]}
    assert set(got) == set(truth)  # "unrelated" pairs with nothing; "copy" stays in groups
    for key, true_bytes in truth.items():
        shared = got[key]["shared_bytes"]
        assert true_bytes - MEAN_CHUNK <= shared <= true_bytes, (key, shared, true_bytes)
    assert [g["paths"] for g in doc["groups"]] == [[f"{root}/base", f"{root}/copy"]]
    sizes = [p["shared_bytes"] for p in doc["similar"]]
    assert sizes == sorted(sizes, reverse=True)
    pair = doc["similar"][0]
    assert [os.path.getsize(p) for p in pair["paths"]] == pair["sizes"]


def test_threshold_and_min_size_filter(edited, capsysbinary):
    root, _ = edited
    doc = run_json(capsysbinary, ["--similar", "--similar-min-size", "7M", "--format", "json", root])
    assert doc["similar"] == []
    small = os.path.join(root, "half")
    with open(os.path.join(root, "base"), "rb") as f:
        data = f.read()
    with open(small, "wb") as f:
        f.write(data[: 3 * MiB] + random.Random(5).randbytes(3 * MiB))
    doc = run_json(capsysbinary, ["--similar", "--similar-threshold", "60", "--format", "json",
                                  root])
    assert not any(small in p["paths"] for p in doc["similar"])  # about 50% shared: below 60
    doc = run_json(capsysbinary, ["--similar", "--similar-threshold", "40", "--format", "json",
                                  root])
    assert any(small in p["paths"] for p in doc["similar"])


def test_chunk_lists_go_to_the_cache_so_a_rerun_only_reads_edit_edges(edited, tmp_path,
                                                                      counting_opener):
    root, _ = edited
    cands = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        st = os.stat(path)
        cands.append((path, st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns - 10**10))
    options = ScanOptions(cache_path=str(tmp_path / "c.lru"))
    first, _ = find_similar(cands, [], options, opener=counting_opener)
    read = counting_opener.bytes
    assert read >= sum(c[1] for c in cands)
    again, _ = find_similar(cands, [], options, opener=counting_opener)
    assert again == first
    # No file is chunked again: only the chunks around each pair's edits are compared (at most
    # two edited regions per pair here, each at most one max-size chunk on each side).
    max_chunk = 4 * AVG_CHUNK
    assert counting_opener.bytes - read <= len(first) * 2 * 2 * 2 * max_chunk


def test_text_report_lists_similar_pairs(edited, capsysbinary):
    root, _ = edited
    code = main(["--similar", root])
    text = capsysbinary.readouterr()[0].decode()
    assert code == 0 and "similar: " in text and f"  ~ {root}/base" in text
    assert "6 similar pairs" in text


def test_pure_parts():
    a = [(10, b"x" * 16), (20, b"y" * 16), (10, b"x" * 16)]
    b = [(10, b"x" * 16), (30, b"z" * 16)]
    assert shared_bytes(a, b) == 10 and shared_bytes(a, a) == 40
    assert unpack_chunks(pack_chunks(a)) == a
    with pytest.raises(ValueError):
        unpack_chunks(b"123")
    pairs = similar_pairs([("A", 40, a), ("B", 40, b)], threshold=25)
    assert [(p.paths, p.shared_bytes) for p in pairs] == [(("A", "B"), 10)]
    assert similar_pairs([("A", 40, a), ("B", 40, b)], threshold=26) == []


def test_a_rerun_with_the_cache_reads_nothing(edited, tmp_path, capsysbinary, monkeypatch,
                                              counting_opener):
    root, _ = edited
    for name in os.listdir(root):  # older than the cache's racy window
        os.utime(os.path.join(root, name), ns=(10**18, 10**18))
    argv = ["--similar", "--cache", str(tmp_path / "c.lru"), "--format", "json", root]
    monkeypatch.setattr("dedup.hashing.open_for_read", counting_opener)
    first = run_json(capsysbinary, argv)
    sizes = sum(os.path.getsize(os.path.join(root, n)) for n in os.listdir(root))
    # Every file chunked once, plus the edit ends `refine` compared: the stats count them all.
    assert sizes < first["stats"]["bytes_read"] == counting_opener.bytes
    assert max(counting_opener.opens.values()) > 1  # the refined files were opened again
    counting_opener.bytes, counting_opener.opens = 0, {}
    again = run_json(capsysbinary, argv)
    assert counting_opener.bytes == 0 and counting_opener.opens == {}
    assert again["stats"]["bytes_read"] == 0
    assert again["similar"] == first["similar"] and again["groups"] == first["groups"]


def test_same_size_files_differing_inside_are_similar_not_duplicates(tmp_path, capsysbinary):
    rng = random.Random(3)
    base = rand(rng, 4 * MiB)
    root = tmp_path / "t"
    root.mkdir()
    (root / "a").write_bytes(base)
    (root / "b").write_bytes(base[:MiB] + rand(rng, 100_000) + base[MiB + 100_000:])
    (root / "c").write_bytes(base)
    for extra in ([], ["--verify"]):
        doc = run_json(capsysbinary, ["--similar", "--format", "json", *extra, str(root)])
        assert [g["paths"] for g in doc["groups"]] == [[f"{root}/a", f"{root}/c"]]
        assert [(p["paths"], p["shared_bytes"]) for p in doc["similar"]] == [
            ([f"{root}/a", f"{root}/b"], 4 * MiB - 100_000)]
        plain = run_json(capsysbinary, ["--format", "json", *extra, str(root)])
        assert plain["groups"] == doc["groups"]


@pytest.mark.parametrize("window", [MAX_CHUNK + 1, 300_001, MiB])
def test_chunk_file_cuts_as_one_cut_buf_over_the_whole_file(tmp_path, monkeypatch, window):
    # chunk_file reads a window at a time and cuts only the window's last chunk again: the chunk
    # list must be the one pyfastcdc gives for the whole file at once, whatever the window.
    import mmh3
    from pyfastcdc import FastCDC

    monkeypatch.setattr("dedup.similar.WINDOW", window)
    cdc = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK, normalized_chunking=LEVEL)
    rng = random.Random(window)
    cases = [b"", rng.randbytes(MIN_CHUNK - 1), rng.randbytes(window), rng.randbytes(window + 1),
             rng.randbytes(3 * MiB + 7), bytes(2 * MiB + 5),  # zeros: every cut at MAX_CHUNK
             rng.randbytes(70_000) * 40]  # a period longer than a chunk: repeated chunks
    for i, data in enumerate(cases):
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        want = [(c.length, mmh3.mmh3_x64_128_digest(c.data)) for c in cdc.cut_buf(data)]
        assert chunk_file(str(path), len(data)) == want, (i, len(data))
