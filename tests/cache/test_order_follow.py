"""RecencyOrder.load_evicting (a followed put in one call) against load, then over_bounds and remove."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cache.order import RecencyOrder

bounds = st.tuples(st.none() | st.integers(1, 6), st.none() | st.integers(1, 40)).filter(
    lambda b: b != (None, None)
)
puts = st.lists(st.tuples(st.integers(0, 9), st.integers(1, 12)), max_size=60)


@given(bounds, puts)
def test_load_evicting_is_load_then_evict_over_bounds(bound: tuple[int | None, int | None],
                                                      ops: list[tuple[int, int]]) -> None:
    capacity, max_bytes = bound
    fast, model = RecencyOrder(capacity, max_bytes), RecencyOrder(capacity, max_bytes)
    for n, (key, weight) in enumerate(ops):
        if max_bytes is not None and weight > max_bytes:
            continue  # refused by the writer (evictions_for): never in a log
        payload = (n, weight, key)
        old, gone = fast.load_evicting(key, payload, weight)
        model_old = model.load(key, payload, weight)
        model_gone = [model.remove(k) for k in model.over_bounds()]
        assert old == model_old
        assert gone == model_gone
        assert list(fast.items()) == list(model.items())
        assert fast.total_weight == model.total_weight
        assert key in fast  # the newest entry is never its own victim
