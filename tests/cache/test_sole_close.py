"""Closing a sole open while its watcher thread reads the shared header (cache/sole.py)."""

from __future__ import annotations

import threading
from pathlib import Path

from cache import PersistentLRU
from cache.sharedlog import SharedRecordLog


def test_close_waits_for_the_watcher_reading_the_header(tmp_path: Path, monkeypatch) -> None:
    # Once seen in a full test run: close() unmapped the header while the watcher read it, and
    # the watcher thread died on "mmap closed or invalid". The watcher is held inside its read
    # until close() either waits for it (joins it) or has finished: only then is it let go, and
    # the header must still be mapped when it reads.
    inside, release, progress = threading.Event(), threading.Event(), threading.Event()
    mapped: list[bool] = []
    read_header = SharedRecordLog.join_requested

    def held_read(log: SharedRecordLog) -> bool:
        inside.set()
        release.wait()
        mapped.append(log._shared is not None and log._shared.mm is not None)
        return read_header(log)

    monkeypatch.setattr(SharedRecordLog, "join_requested", held_read)
    cache = PersistentLRU(str(tmp_path / "c.lru"), capacity=10)
    cache["k"] = b"v"
    watcher = cache._watcher
    assert watcher is not None  # a sole open of a shared file is watched
    join = watcher.join

    def marked_join(*args: object) -> None:
        progress.set()
        join(*args)

    watcher.join = marked_join  # type: ignore[method-assign]
    inside.wait()  # the watcher polls every few ms: it is now inside its read

    def close() -> None:
        cache.close()
        progress.set()

    closer = threading.Thread(target=close)
    closer.start()
    progress.wait()
    release.set()
    closer.join()
    assert mapped and all(mapped)
    assert cache.closed
