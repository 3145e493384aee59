"""The sole open of a shared cache file, and how a PersistentLRU lets go of it (cache/shared.py).

An open that finds nobody else present keeps the writer lock between operations and runs as a
single owner does: its owner's per-operation protocol (`_begin`, `_finish`) is unset. A watcher
thread polls the header's `request` word (the standard library has no cross-process wake-up); when
another open asks to join, the owner publishes the header, shares the file and from then on takes
the lock per operation.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from cache.shared import SOLE_POLL
from cache.sharedlog import SharedRecordLog


def attach(lru: Any, log: SharedRecordLog, lock: threading.RLock,
           stop: threading.Event) -> threading.Thread | None:
    """Give *lru* the per-operation protocol of *log*: now, or once another open asks to join.
    Return the watcher thread, if one was started: set *stop* and join it before closing *log*
    (it reads the shared header's map, which the close unmaps)."""
    owner = weakref.ref(lru)  # the watcher must not keep an unclosed cache alive

    def use_lock_per_op() -> None:
        target = owner()
        if target is not None:
            target._begin, target._finish, target._follow_published = log.protocol()

    log.on_shared = use_lock_per_op
    if not log.sole:
        use_lock_per_op()
        return None
    watcher = threading.Thread(target=_watch, args=(owner, log, lock, stop),
                               name="fanmill-lru-sole", daemon=True)
    watcher.start()
    return watcher


def stop_watching(watcher: threading.Thread | None, stop: threading.Event) -> None:
    """Stop the watcher and wait for it: a close must not unmap the header under its read (the
    map's read raised "mmap closed" in the watcher, once in a full test run)."""
    stop.set()
    if watcher is not None and watcher is not threading.current_thread():
        watcher.join()  # it wakes at once from stop.wait; its last step takes the owner's lock


def _watch(owner: Callable[[], Any], log: SharedRecordLog, lock: threading.RLock,
           stop: threading.Event) -> None:
    """While *log* is its file's sole open: let go of the file when another open asks to join.

    A joiner waits about SOLE_POLL plus a GIL switch. The change of protocol happens under the
    owner's lock, so no operation is halfway through it: a busy owner makes it at the start of its
    next operation (this thread could wait long for a lock the owner takes back at once), an idle
    one here.
    """
    while not stop.wait(SOLE_POLL):
        if log.join_requested():
            target = owner()
            if target is not None:
                target._begin = lambda: _begin_leaving(log)
            del target
            with lock:
                if not log.closed and log.sole:
                    log.leave_sole()  # then log.on_shared(): every operation takes the lock
            return


def _begin_leaving(log: SharedRecordLog) -> bool:
    if log.sole:
        log.leave_sole()  # sets the owner's _begin and _finish for the operations after this one
    return log.begin()
