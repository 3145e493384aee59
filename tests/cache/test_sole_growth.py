"""The sole open grows its file with a helper thread, and lets another open in only once it is done."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cache import PersistentLRU
from cache.growth import GrowingMap
from cache.shared import SharedFile


def test_a_sole_open_lets_go_only_after_its_growth_helper(tmp_path: Path, monkeypatch) -> None:
    # The helper extends the file past the map; a joiner that wrote while it ran could have its
    # records cut off by the helper's undo of a failed step. The helper is held inside its step
    # until the sole open, asked to let go, either waits for it or shares the file without waiting.
    events: list[str] = []
    changed = threading.Condition()
    release = threading.Event()

    def note(what: str) -> None:
        with changed:
            events.append(what)
            changed.notify_all()

    prefill, wait_prefill, share = GrowingMap._prefill, GrowingMap._wait_prefill, SharedFile.share

    def held_prefill(self: GrowingMap, fd: int, size: int) -> None:
        note("helper started")
        release.wait()
        prefill(self, fd, size)
        note("helper done")

    def noted_wait(self: GrowingMap) -> None:
        if self._prefill_thread is not None and self._prefill_thread.is_alive():
            note("waiting")
        wait_prefill(self)

    def noted_share(self: SharedFile) -> None:
        note("share")
        share(self)

    monkeypatch.setattr(GrowingMap, "_prefill", held_prefill)
    monkeypatch.setattr(GrowingMap, "_wait_prefill", noted_wait)
    monkeypatch.setattr(SharedFile, "share", noted_share)
    path = str(tmp_path / "c.lru")
    a = PersistentLRU(path, capacity=100, serializer="bytes")
    assert a._log.sole  # type: ignore[attr-defined]
    big = os.urandom(200_000)  # past the first map: the sole open grows the file
    a["big"] = big
    with changed:
        changed.wait_for(lambda: "helper started" in events)
    joined: list[PersistentLRU] = []
    joiner = threading.Thread(target=lambda: joined.append(PersistentLRU(path, serializer="bytes")))
    joiner.start()
    with changed:
        changed.wait_for(lambda: "waiting" in events or "share" in events)
    release.set()
    joiner.join()
    assert events == ["helper started", "waiting", "helper done", "share"]
    (b,) = joined
    assert not a._log.sole and b["big"] == big  # type: ignore[attr-defined]
    for i in range(20):  # both append now, growing the file the shared way
        (a, b)[i % 2][i] = big[: 50_000 + i]
    assert [a[i] for i in range(20)] == [big[: 50_000 + i] for i in range(20)]
    a.close()
    b.close()
    with PersistentLRU(path, serializer="bytes") as c:
        assert c["big"] == big and c[19] == big[:50_019]
        end = c._log.end  # type: ignore[attr-defined]
    assert os.path.getsize(path) == end  # the last close cut the preallocated tail
