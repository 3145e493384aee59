"""The sole open grows its file with a helper thread, and lets another open in only once it is done."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cache import PersistentLRU
from cache.growth import GrowingMap
from cache.shared import SharedFile


class _Held:
    """The sole open's growth helper held inside its step until released; what happened, in order."""

    def __init__(self, monkeypatch) -> None:  # noqa: ANN001
        self.events: list[str] = []
        self.changed = threading.Condition()
        self.release = threading.Event()
        prefill, wait_prefill, share = GrowingMap._prefill, GrowingMap._wait_prefill, SharedFile.share

        def held_prefill(log: GrowingMap, fd: int, size: int) -> None:
            self.note("helper started")
            self.release.wait()
            prefill(log, fd, size)
            self.note("helper done")

        def noted_wait(log: GrowingMap) -> None:
            if log._prefill_thread is not None and log._prefill_thread.is_alive():
                self.note("waiting")
            wait_prefill(log)

        def noted_share(shared: SharedFile) -> None:
            self.note("share")
            share(shared)

        monkeypatch.setattr(GrowingMap, "_prefill", held_prefill)
        monkeypatch.setattr(GrowingMap, "_wait_prefill", noted_wait)
        monkeypatch.setattr(SharedFile, "share", noted_share)

    def note(self, what: str) -> None:
        with self.changed:
            self.events.append(what)
            self.changed.notify_all()

    def wait_for(self, *whats: str) -> None:
        with self.changed:
            self.changed.wait_for(lambda: any(what in self.events for what in whats))


def test_a_sole_open_lets_go_only_after_its_growth_helper(tmp_path: Path, monkeypatch) -> None:
    # The helper extends the file past the map; a joiner that wrote while it ran could have its
    # records cut off by the helper's undo of a failed step. The helper is held inside its step
    # until the sole open, asked to let go, either waits for it or shares the file without waiting.
    held = _Held(monkeypatch)
    path = str(tmp_path / "c.lru")
    a = PersistentLRU(path, capacity=100, serializer="bytes")
    assert a._log.sole  # type: ignore[attr-defined]
    big = os.urandom(200_000)  # past the first map: the sole open grows the file
    a["big"] = big
    held.wait_for("helper started")
    joined: list[PersistentLRU] = []
    joiner = threading.Thread(target=lambda: joined.append(PersistentLRU(path, serializer="bytes")))
    joiner.start()
    held.wait_for("waiting", "share")
    held.release.set()
    joiner.join()
    assert held.events == ["helper started", "waiting", "helper done", "share"]
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


def test_a_sole_open_closes_only_after_its_growth_helper(tmp_path: Path, monkeypatch) -> None:
    # The close cuts the file to its records: a helper still extending it would leave zeros behind.
    held = _Held(monkeypatch)
    path = str(tmp_path / "c.lru")
    a = PersistentLRU(path, capacity=100, serializer="bytes")
    a["big"] = big = os.urandom(200_000)
    held.wait_for("helper started")
    end = a._log.end  # type: ignore[attr-defined]
    closer = threading.Thread(target=lambda: (a.close(), held.note("closed")))
    closer.start()
    held.wait_for("waiting", "closed")
    held.release.set()
    closer.join()
    assert held.events == ["helper started", "waiting", "helper done", "closed"]
    assert os.path.getsize(path) == end
    with PersistentLRU(path, serializer="bytes") as again:
        assert again["big"] == big
