"""Running numbered tasks in forked worker processes as well as this one: the only way Python
code uses more than one core (threads hand one GIL around).

`take_in_processes(count, work, procs, take)` calls `take(i, work(i))` in this process for every
task number i, whatever process ran `work(i)`: tasks are handed out one at a time through a shared
pipe (a process that finished its task takes the next), every process runs the same code on the
same copy-on-write memory, and results come back through an anonymous memory file (memfd) per
process, marshalled, and are taken as soon as they are in (the small-file stage builds its groups
so). So a task's result must be marshal-able (ints, bytes, str, tuples, lists, dicts) and depend
only on the task number and the state at the fork; this process's own results are taken as they
are, not marshalled. A child that dies leaves its tasks to this process, which runs every task it
has no result for: a crash of a worker costs time, never a task.

Forking is refused (everything runs here, in order) when another thread is alive: a fork copies
only the calling thread, and a lock another thread held would stay taken in the child.

A child whose work is over is not waited for at once: its exit (the kernel unmapping its copy of
this process's memory) took 1-2 ms of /usr/lib's run with this process waiting, twice a run.
`reap_later` lists it and `reap` waits for the listed children later (dedup.pipeline, at the end
of a run, when they are long gone).
"""

from __future__ import annotations

import _signal as signal  # signal without its enums: the enum module is ~1.5 ms of imports
import marshal
import mmap
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

_TASK = 4  # bytes per task number in the pipe (a read of 4 bytes takes exactly one)
MAX_TASKS = 16_000  # the pipe's default 64 KiB holds every task number before any is taken


_exited: list[int] = []  # children whose work is over, not yet reaped


def reap_later(pid: int) -> None:
    """List child *pid*, whose work is over (it is exiting), for `reap`."""
    _exited.append(pid)


def reap() -> None:
    """Wait for every child `reap_later` listed (no zombie is left)."""
    while _exited:
        pid = _exited.pop()
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped already (by a caller waiting for any child)
            pass


def usable_cpus() -> int:
    """Return the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Return True when forking is safe here: a POSIX fork and no other thread alive."""
    # A thread is made through threading (concurrent.futures' pools too): a run that never
    # imported it has none, and does not import it to count them (~1 ms of every start).
    threading = sys.modules.get("threading")
    return (hasattr(os, "fork") and hasattr(os, "memfd_create")
            and (threading is None or threading.active_count() == 1))


def load_mapped(fd: int, offset: int, length: int) -> Any:
    """The marshalled value at *offset* of the memory file *fd*, read through a map."""
    # Mapped, not read(): the bytes pass from process to process through shared memory, and
    # read() would count them again in the run's rchar (the pyenv walk and compare moved ~20 MiB:
    # bytes read 1.07x -> 1.11x the minimum). Unmapped at once.
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    with mmap.mmap(fd, offset + length - start, prot=mmap.PROT_READ, offset=start) as mm:
        view = memoryview(mm)
        part = view[offset - start :]
        try:
            return marshal.loads(part)
        finally:
            part.release()
            view.release()


def take_in_processes(count: int, work: Callable[[int], T], procs: int,
                      take: Callable[[int, T], None],
                      setup: Callable[[], None] | None = None,
                      ready: Callable[[], None] | None = None) -> None:
    """Call `take(i, work(i))` in this process for every i in range(count), in no particular
    order, with *work* run by *procs* processes (this one included).

    Each result is taken as soon as it is in: this process's own at once (not marshalled), the
    other processes' between this process's tasks. What the caller does with them (the
    small-file stage: building the report's groups) overlaps the other processes' last tasks
    instead of following them. A child that dies leaves its tasks to this process.

    *setup* runs in every process after the forks, before its first task (e.g. to start its
    own thread pool: threads do not survive a fork). With procs <= 1, one task, or forking
    refused (`can_fork`), everything runs here in order. At most `MAX_TASKS` tasks.

    *ready*, when given, runs once every task is done, and the other processes' results are
    taken only after it: until then they stay marshalled in their memory files, outside this
    process's RSS, while *ready* frees what only the work needed (the scan's table).
    """
    if count > MAX_TASKS:
        raise ValueError(f"at most {MAX_TASKS} tasks, not {count}")
    procs = min(procs, count)
    if procs <= 1 or not can_fork():
        if setup is not None:
            setup()
        for i in range(count):
            take(i, work(i))
        if ready is not None:
            ready()
        return
    done = [False] * count
    files: list[list[int]] = []  # per child: its memory file, how far it was read
    read_end, write_end = os.pipe()
    # Each child closes its end of *over* once its results are written, before it exits: the
    # end of file here says every child's work is over (or it died), without waiting for their
    # exits (`reap_later`).
    over, over_w = os.pipe()
    children: list[int] = []

    def new_records() -> list[tuple[int, int, int, int]]:
        # The records written since the last call, their tasks marked done: (task number,
        # memory file, offset, length) each.
        found = []
        for place in files:
            size = os.fstat(place[0]).st_size
            at = place[1]
            while at + 8 + _TASK <= size:  # complete records only (a torn last one waits)
                head = os.pread(place[0], 8 + _TASK, at)
                length = int.from_bytes(head[:8], "little")
                if at + 8 + _TASK + length > size:
                    break
                number = int.from_bytes(head[8:], "little")
                done[number] = True
                found.append((number, place[0], at + 8 + _TASK, length))
                at += 8 + _TASK + length
            place[1] = at
        return found

    def take_new() -> None:
        for number, fd, at, length in new_records():
            take(number, load_mapped(fd, at, length))

    try:
        os.write(write_end, b"".join(i.to_bytes(_TASK, "little") for i in range(count)))
        os.close(write_end)
        write_end = -1
        for _ in range(procs - 1):
            out = os.memfd_create("dedup-results", os.MFD_CLOEXEC)
            files.append([out, 0])
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child; its outcome is checked
                _child(read_end, out, work, setup, over_w)
            children.append(pid)
        os.close(over_w)
        over_w = -1
        if setup is not None:
            setup()
        while True:
            task = os.read(read_end, _TASK)
            if not task:
                break
            number = int.from_bytes(task, "little")
            done[number] = True
            take(number, work(number))
            if ready is None:
                take_new()
        while os.read(over, 1):  # not reached: a child writes nothing there
            pass
        while children:
            reap_later(children.pop())
        late = new_records()
        if ready is None:
            for number, fd, at, length in late:
                take(number, load_mapped(fd, at, length))
            late = []
        for number in [n for n, ok in enumerate(done) if not ok]:  # a worker died
            take(number, work(number))
        if ready is not None:
            ready()
            for number, fd, at, length in late:
                take(number, load_mapped(fd, at, length))
    finally:
        for fd in (write_end, over_w):
            if fd >= 0:
                os.close(fd)
        os.close(read_end)
        os.close(over)
        for fd, _ in files:
            os.close(fd)
        _kill_all(children)  # interrupted: no child outlives the call


def _kill_all(children: list[int]) -> None:
    """Kill and reap every child still listed."""
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass


def _run_tasks(tasks: int, out: int, work: Callable[[int], object]) -> None:
    """Run tasks from *tasks* until it is empty, each result appended to *out*."""
    while True:
        task = os.read(tasks, _TASK)
        if not task:
            break
        number = int.from_bytes(task, "little")
        _write_all(out, _record(number, work(number)))


def _child(tasks: int, out: int, work: Callable[[int], object],
           setup: Callable[[], None] | None, over: int) -> None:
    """Run tasks in a forked child, then close *over*; never return."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, once
        if setup is not None:
            setup()
        _run_tasks(tasks, out, work)
        code = 0
    finally:
        try:
            os.close(over)  # before the exit's unmapping: the parent goes on now
        finally:
            # No cleanup of the parent's objects, no buffered output flushed twice, no atexit.
            os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _record(number: int, value: object) -> bytes:
    """One result as written: its length (8 bytes), its task number (4), its marshal."""
    data = marshal.dumps(value)
    return len(data).to_bytes(8, "little") + number.to_bytes(_TASK, "little") + data
