"""cache/_cfollow.c: the compiled follow loop does to a real index exactly what the Python loop does."""

from __future__ import annotations

import mmap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# Imported, not skipped when missing: make test installs a compiler, so a failed build fails here.
from cache import _cfollow, follow
from cache import records as fmt
from cache.encoding import decode_key, encode_key
from cache.errors import CorruptStoreError
from cache.follow import Index, apply_published_python
from cache.index import IndexReplay, encode_bounds
from cache.order import RecencyOrder

# Keys of every encoded kind, a few undecodable ones among them (an unknown tag, a bad int).
GOOD_KEYS = [encode_key(k) for k in ("a", "bb", "é\udc80", b"\x00b", 0, -7, 10**30, ("t", 1), ())]
BAD_KEYS = [b"", b"x1", b"i", b"i-", b"i1a", b"s\xff"]


class Owner(IndexReplay):
    """IndexReplay with what it needs of PersistentLRU: an order, decoded keys, live bytes."""

    def __init__(self, capacity: int | None, max_bytes: int | None) -> None:
        self._order = RecencyOrder(capacity, max_bytes)
        self._keys: dict[bytes, Any] = {}
        self._live = 0
        self._opened = False
        self._meta = {}
        self.path = "followed.lru"

    def index(self) -> Index:
        order = self._order
        return Index(self._keys, self._key_of, order.move_to_end, self._apply, self._apply_put,
                     order.entries, order, self)

    def state(self) -> tuple[Any, ...]:
        """What a follow leaves: the order (its entries in order, weight, bounds), the live bytes."""
        # The decoded keys are a cache that each loop fills differently (the compiled one decodes
        # plain keys in place): only its correctness is compared.
        assert all(decode_key(kbytes) == key for kbytes, key in self._keys.items())
        order = self._order
        return list(order.entries.items()), order.total_weight, order.capacity, order.max_bytes, self._live


records = st.lists(
    st.tuples(
        st.sampled_from([fmt.PUT] * 4 + [fmt.TOUCH] * 4 + [fmt.DELETE, fmt.CLEAR, fmt.BOUNDS]),
        st.sampled_from(GOOD_KEYS),
        st.binary(max_size=40),
        st.booleans(),  # continues in the next record (MORE)
    ),
    max_size=40,
)
bounds = st.tuples(st.none() | st.integers(1, 6), st.none() | st.integers(40, 400))


def encode(recs: list[tuple[int, bytes, bytes, bool]], seq: int, new_bounds: tuple[Any, Any]) -> bytes:
    out = b""
    for i, (kind, key, value, more) in enumerate(recs):
        if kind == fmt.BOUNDS:
            key, value = encode_bounds(*new_bounds), b""
        elif kind == fmt.CLEAR:
            key, value = b"", b""
        elif kind != fmt.PUT:
            value = b""
        out += fmt.encode_record(kind | (fmt.MORE if more and i < len(recs) - 1 else 0), seq + i, key, value)
    return out


def run(loop: Any, owner: Owner, buf: Any, cuts: list[int], base: int, seq: int) -> tuple[Any, ...]:
    """Follow *buf* in the steps *cuts* make (as successive catch-ups do); return what came of it."""
    pos, outcome = 0, []
    for cut in [*cuts, len(buf)]:
        try:
            pos, seq = loop(buf, pos, max(cut, pos), base, seq, owner.index())
            outcome.append((pos, seq))
        except CorruptStoreError as err:
            outcome.append(str(err))
            break
    return tuple(outcome), owner.state()


@settings(max_examples=300)
@given(records, bounds, bounds, st.lists(st.integers(0, 4000), max_size=3), st.data())
def test_the_compiled_loop_leaves_the_index_the_python_loop_leaves(
    recs: list[tuple[int, bytes, bytes, bool]], start: tuple[Any, Any], later: tuple[Any, Any],
    cuts: list[int], data: st.DataObject,
) -> None:
    if start == (None, None):
        start = (3, None)
    raw = encode(recs, 5, later if later != (None, None) else start)
    if data.draw(st.booleans()):  # then a PUT or a TOUCH of an undecodable key
        raw += fmt.encode_record(data.draw(st.sampled_from([fmt.PUT, fmt.TOUCH])), 5 + len(recs),
                                 data.draw(st.sampled_from(BAD_KEYS)), b"v")
    cuts = sorted(c % (len(raw) + 1) for c in cuts)
    python_owner, c_owner = Owner(*start), Owner(*start)
    assert run(_cfollow.apply_published, c_owner, raw, cuts, 100, 5) == \
        run(apply_published_python, python_owner, raw, cuts, 100, 5)


def test_it_reads_a_shared_map_in_place_and_is_the_loop_followers_run(tmp_path: Any) -> None:
    assert follow.apply_published is _cfollow.apply_published  # built: the Python loop costs 1.85x the instructions
    raw = b"".join(fmt.encode_record(fmt.PUT, i, encode_key(i % 5), b"v" * i) for i in range(20))
    raw += fmt.encode_record(fmt.TOUCH, 20, encode_key(3)) + fmt.encode_record(fmt.TOUCH, 21, encode_key(1))
    path = tmp_path / "log"
    path.write_bytes(raw)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        c_owner, python_owner = Owner(3, None), Owner(3, None)
        assert follow.apply_published(mm, 0, len(raw), 0, 0, c_owner.index()) == (len(raw), 22)
        apply_published_python(raw, 0, len(raw), 0, 0, python_owner.index())
    assert c_owner.state() == python_owner.state()
    assert list(c_owner._order) == [2, 4, 3]  # 3 touched; 1 gone (evicted): nothing moved


def test_a_span_past_the_buffer_and_a_wrong_index_are_errors_not_reads() -> None:
    raw = fmt.encode_record(fmt.TOUCH, 0, encode_key("a"))
    owner = Owner(3, None)
    with pytest.raises(ValueError, match="outside the buffer"):
        _cfollow.apply_published(raw, 0, len(raw) + 1, 0, 0, owner.index())
    with pytest.raises(TypeError, match="Index"):
        _cfollow.apply_published(raw, 0, len(raw), 0, 0, (1, 2))
