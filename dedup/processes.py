"""Running numbered tasks in forked worker processes as well as this one: the only way Python
code uses more than one core (threads hand one GIL around).

`map_in_processes(count, work, procs)` returns `[work(0), ..., work(count - 1)]`, whatever process
ran each task: tasks are handed out one at a time through a shared pipe (a process that finished
its task takes the next), every process runs the same code on the same copy-on-write memory, and
results come back through an anonymous memory file (memfd) per child, marshalled. So a task's
result must be marshal-able (ints, bytes, str, tuples, lists, dicts) and depend only on the task
number and the state at the fork. A child that dies leaves its tasks to this process, which runs
every task it has no result for: a crash of a worker costs time, never a task.

Forking is refused (everything runs here, in order) when another thread is alive: a fork copies
only the calling thread, and a lock another thread held would stay taken in the child.
"""

from __future__ import annotations

import marshal
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_MISSING = object()
_TASK = 4  # bytes per task number in the pipe (a read of 4 bytes takes exactly one)
MAX_TASKS = 16_000  # the pipe's default 64 KiB holds every task number before any is taken


def usable_cpus() -> int:
    """Return the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Return True when forking is safe here: a POSIX fork and no other thread alive."""
    return hasattr(os, "fork") and hasattr(os, "memfd_create") and threading.active_count() == 1


def map_in_processes(count: int, work: Callable[[int], T], procs: int,
                     setup: Callable[[], None] | None = None) -> list[T]:
    """Return [work(i) for i in range(count)], run by *procs* processes (this one included).

    *setup* runs in every process after the forks, before its first task (e.g. to start its
    own thread pool: threads do not survive a fork). With procs <= 1, one task, or forking
    refused (`can_fork`), everything runs here in order. At most `MAX_TASKS` tasks.
    """
    if count > MAX_TASKS:
        raise ValueError(f"at most {MAX_TASKS} tasks, not {count}")
    procs = min(procs, count)
    if procs <= 1 or not can_fork():
        if setup is not None:
            setup()
        return [work(i) for i in range(count)]
    read_end, write_end = os.pipe()
    children: list[tuple[int, int]] = []  # (pid, memfd)
    results: list = [_MISSING] * count
    try:
        # Every task number is in the pipe before the first fork, and its write end is closed
        # in every process: a reader finding it empty knows the tasks are all taken.
        os.write(write_end, b"".join(i.to_bytes(_TASK, "little") for i in range(count)))
        os.close(write_end)
        write_end = -1
        for _ in range(procs - 1):
            out = os.memfd_create("dedup-results", os.MFD_CLOEXEC)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child; its outcome is checked
                _child(read_end, out, work, setup)
            children.append((pid, out))
        if setup is not None:
            setup()
        while True:
            task = os.read(read_end, _TASK)
            if not task:
                break
            number = int.from_bytes(task, "little")
            results[number] = work(number)
        while children:
            pid, out = children[-1]
            os.waitpid(pid, 0)
            children.pop()
            _collect(out, results)
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)
        for pid, out in children:  # interrupted: no child outlives the call
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            os.close(out)
    for number, value in enumerate(results):
        if value is _MISSING:  # its process died: run it here
            results[number] = work(number)
    return results


def _child(tasks: int, out: int, work: Callable[[int], object],
           setup: Callable[[], None] | None) -> None:
    """Run tasks from *tasks* until it is empty, each result appended to *out*; never return."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, once
        if setup is not None:
            setup()
        while True:
            task = os.read(tasks, _TASK)
            if not task:
                break
            number = int.from_bytes(task, "little")
            data = marshal.dumps((number, work(number)))
            _write_all(out, len(data).to_bytes(8, "little") + data)
        code = 0
    finally:
        # No cleanup of the parent's objects, no buffered output flushed twice, no atexit.
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(out: int, results: list) -> None:
    """Read the results a child left in its memory file (a torn last one is ignored)."""
    try:
        size = os.fstat(out).st_size
        data = os.pread(out, size, 0) if size else b""
    finally:
        os.close(out)
    at = 0
    while at + 8 <= len(data):
        length = int.from_bytes(data[at : at + 8], "little")
        if at + 8 + length > len(data):
            break
        number, value = marshal.loads(data[at + 8 : at + 8 + length])
        results[number] = value
        at += 8 + length
