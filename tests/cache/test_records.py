"""The record format and the raw record log, against a dict model, across reopen."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import StoreLockedError
from cache import records as fmt
from cache.log import RecordLog

KINDS = st.sampled_from([fmt.PUT, fmt.DELETE, fmt.TOUCH, fmt.CLEAR])


@given(KINDS, st.integers(0, 2**64 - 1), st.binary(max_size=64), st.binary(max_size=300), st.booleans())
def test_a_record_decodes_to_what_was_encoded(kind, seq, key, value, more) -> None:
    data = fmt.encode_record(kind | (fmt.MORE if more else 0), seq, key, value)
    rec = fmt.decode_record(b"junk" + data, 4, 100, seq)
    assert (rec.kind, rec.seq, rec.key, rec.value_len, rec.offset, rec.length, rec.more) == (
        kind, seq, key, len(value), 104, len(data), more,
    )
    assert bytes(fmt.check_record(data, key)) == value


@given(st.binary(min_size=1, max_size=200), st.integers(0, 10_000))
def test_any_single_byte_change_is_detected(value, where) -> None:
    data = bytearray(fmt.encode_record(fmt.PUT, 7, b"key", value))
    where %= len(data)
    data[where] ^= 0x5A
    with pytest.raises((fmt.FormatError, fmt.NeedMore)):
        fmt.decode_record(bytes(data), 0, 0, 7)


def test_a_record_out_of_sequence_is_refused() -> None:
    data = fmt.encode_record(fmt.PUT, 5, b"k", b"v")
    with pytest.raises(fmt.FormatError, match="out of sequence"):
        fmt.decode_record(data, 0, 0, 6)


def test_resync_finds_the_next_intact_record() -> None:
    a = fmt.encode_record(fmt.PUT, 1, b"a", b"1" * 50)
    b = fmt.encode_record(fmt.PUT, 2, b"b", b"2")
    damaged = a[:30] + b"\xff" * 5 + a[35:] + b
    rec = fmt.find_next_record(damaged, 1, 0, 0)
    assert rec is not None and rec.key == b"b" and rec.offset == len(a)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=5))
def test_header_round_trips_its_metadata(meta) -> None:
    header = fmt.encode_header(42, meta)
    decoded = fmt.decode_header(header + b"rest")
    assert (decoded.first_seq, decoded.meta, decoded.size) == (42, meta, len(header))


class Replayed:
    """Rebuilds a dict from a log's records: the simplest index over the log."""

    def __init__(self) -> None:
        self.index: dict[bytes, tuple[int, int]] = {}

    def __call__(self, rec: fmt.Record) -> None:
        if rec.kind == fmt.PUT:
            self.index[rec.key] = (rec.offset, rec.length)
        elif rec.kind == fmt.DELETE:
            self.index.pop(rec.key, None)
        elif rec.kind == fmt.CLEAR:
            self.index.clear()


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.binary(min_size=1, max_size=4), st.binary(max_size=50)),
        st.tuples(st.just("del"), st.binary(min_size=1, max_size=4), st.just(b"")),
        st.tuples(st.just("reopen"), st.just(b""), st.just(b"")),
        st.tuples(st.just("rewrite"), st.just(b""), st.just(b"")),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(OPS)
def test_the_log_agrees_with_a_dict_across_reopen_and_rewrite(ops) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        path = tmp / "raw.log"
        model: dict[bytes, bytes] = {}
        index = Replayed()
        log = RecordLog(path, meta={"app": "test"}, on_record=index)
        for op, key, value in ops:
            if op == "put":
                index.index[key] = log.append(fmt.PUT, key, value)
                model[key] = value
            elif op == "del" and key in model:
                log.append_many([(fmt.TOUCH, key, b""), (fmt.DELETE, key, b"")])
                del index.index[key]
                del model[key]
            elif op == "reopen":
                log.close()
                index = Replayed()
                log = RecordLog(path, meta={"app": "ignored"}, on_record=index)
                assert log.meta == {"app": "test"}
            elif op == "rewrite":
                items = [(fmt.PUT, k, bytes(log.read(*index.index[k], k))) for k in index.index]
                for k, loc in zip(list(index.index), log.rewrite(items), strict=True):
                    index.index[k] = loc
            assert {k: bytes(log.read(*loc, k)) for k, loc in index.index.items()} == model
        log.close()
    finally:
        shutil.rmtree(tmp)


def test_one_writer_per_file(tmp_path: Path) -> None:
    path = tmp_path / "one.log"
    first = RecordLog(path, meta={}, on_record=lambda r: None)
    with pytest.raises(StoreLockedError):
        RecordLog(path, meta={}, on_record=lambda r: None)
    reader = RecordLog(path, meta={}, on_record=lambda r: None, readonly=True)
    reader.close()
    first.close()
    RecordLog(path, meta={}, on_record=lambda r: None).close()


def test_a_stale_compaction_file_is_removed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    RecordLog(path, meta={}, on_record=lambda r: None).close()
    (tmp_path / "c.log.compact").write_bytes(b"half a compaction")
    RecordLog(path, meta={}, on_record=lambda r: None).close()
    assert not (tmp_path / "c.log.compact").exists()
