"""Running a tree of tasks — tasks that give more tasks, as the walk's subtrees do — in this
process and forked worker processes forked once, with no round to wait for.

`map_tree(tasks, work, procs, accept)` runs `work(task, stop) -> (result, info, subtasks)` for
*tasks* and every subtask they give. A process that finishes a task takes the next waiting one at
once: forking a round of known tasks at a time (dedup.processes) waited, each round, for its
slowest task, and the pyenv tree's walk took 5 rounds. *info* and *subtasks* come back to this
process as each task ends (`accept(info)` may stop the whole run); results stay marshalled in
memory files until read, and each is yielded as soon as it is in, between this process's own
tasks, with a key that sorts into tree order (a task's result, then its subtasks' results in the
order given, depth first), so the outcome, put in key order, does not depend on which process ran
what. The caller's work on them (the walk's: appending to the file table, bucketing by size)
overlaps the workers' tasks instead of following the last one; yielded in tree order instead,
the results held back behind a worker's last task (121-141 on /usr/lib) were merged after it,
about 17 ms with the worker idle. A task run here may end early, its waiting work given back as
subtasks, when a worker is idle with nothing to give it (`stop`): a worker waited on this
process's tasks for a third of /usr/lib's walk (its tasks of 8,192 entries, about 40 ms, handed
out only between them).

Protocol (Linux): this process keeps the waiting tasks and hands each worker at most `AHEAD`
at a time, through the worker's own pipe (a task's marshal lies in a memory file; the pipe
carries its number, offset and length: 24 bytes, written and read whole). A worker appends
(info, subtasks) and its result to its own memory file and says so on its note pipe. With
nothing left to run, this process takes back a task still waiting in a worker's pipe (both
ends are non-blocking; workers wait in select()). It knows what each worker holds, so a worker
that dies (its note pipe ends) costs time, never a task: what it held is run again.
"""

from __future__ import annotations

import _signal as signal  # signal without its enums: the enum module is ~1.5 ms of imports
import marshal
import mmap
import os
import select
from collections import deque

from dedup.processes import can_fork, load_mapped, reap_later

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    Stop = Callable[[], bool]
    Work = Callable[[Any, Stop], tuple[Any, Any, list]]

AHEAD = 8  # tasks a worker holds at most (this process runs tasks too: it hands out between them)
_MSG = 24  # a task's number, offset and length in the payload file (8 bytes each)
_NOTE = 32  # a finished task: number, offset, length of (info, subtasks), length of the result


class Refused(Exception):
    """`accept` said no to a task's info: the run stopped, and what it yielded is void."""


def map_tree(tasks: Sequence, work: Work, procs: int,
             accept: Callable[[Any], bool] | None = None) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Yield (key, result) for *tasks* and the subtasks their `work` gives, run by *procs*
    processes (this one included), each result as soon as it is in: *key*, a tuple of ints,
    sorts the results into tree order. Raise `Refused` as soon as `accept(info)` says no
    (nothing more is started). `work(task, stop)` may call `stop()` between steps: True means
    end now and give what is not done as subtasks (here: a worker is idle; in a worker: this
    process is, with nothing to run). Tasks, results, infos and subtasks must be marshal-able. With procs <= 1 or
    forking refused (`dedup.processes.can_fork`) everything runs here."""
    if procs <= 1 or len(tasks) == 0 or not can_fork():
        yield from _here(tasks, work, accept)
    else:
        yield from _Tree(work, procs).run(tasks, accept)


def _never() -> bool:
    return False


def _here(tasks: Sequence, work: Work, accept: Callable[[Any], bool] | None
          ) -> Iterator[tuple[tuple[int, ...], Any]]:
    stack = list(reversed(tasks))
    count = 0
    while stack:
        result, info, subtasks = work(stack.pop(), _never)
        if accept is not None and not accept(info):
            raise Refused
        yield (count,), result  # run in tree order: keys ascend
        count += 1
        stack.extend(reversed(subtasks))


def _append(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Worker:
    __slots__ = ("pid", "tasks", "notes", "out", "held", "buffer")

    def __init__(self, pid: int, tasks: int, notes: int, out: int) -> None:
        self.pid, self.tasks, self.notes, self.out = pid, tasks, notes, out
        self.held: list[int] = []  # numbers given to it and not finished, in pipe order
        self.buffer = b""  # a note read in part


class _Tree:
    """One `map_tree` run with workers (this process schedules, runs tasks and yields)."""

    def __init__(self, work: Work, procs: int) -> None:
        self.work = work
        self.key_of: dict[int, tuple[int, ...]] = {}  # tree-order keys, until yielded
        self.arrived: deque[int] = deque()  # finished, not yielded
        self.procs = procs
        self.task_of: dict[int, Any] = {}  # unfinished tasks by number
        self.where: dict[int, tuple[int, int, int]] = {}  # finished: their result's place
        self.ready: deque[int] = deque()
        self.count = 0
        self.workers: list[_Worker] = []
        self.task_r: dict[int, int] = {}  # a worker's task pipe: write end -> read end
        self.refused = False
        # One byte shared with the workers: 1 while this process waits with nothing to run, and
        # a worker's task ends early, its waiting work given back as subtasks (`_serve`): this
        # process waited 13-24 ms of /usr/lib's walk on a worker's last task (up to 8,192
        # entries), one core idle.
        self.idle = mmap.mmap(-1, 1)

    def new(self, task: Any) -> int:
        number = self.count
        self.count += 1
        self.task_of[number] = task
        self.ready.append(number)
        return number

    def run(self, tasks: Sequence, accept: Callable[[Any], bool] | None) -> Iterator:
        files: list[int] = []
        payloads = -1
        try:
            payloads = os.memfd_create("dedup-tasks", os.MFD_CLOEXEC)
            own = os.memfd_create("dedup-results", os.MFD_CLOEXEC)
            files.append(own)
            self.payloads, self.own, self.own_at, self.sent_at = payloads, own, 0, 0
            self.accept = accept
            for k, task in enumerate(tasks):
                self.key_of[self.new(task)] = (k,)
            for _ in range(self.procs - 1):
                self.fork(files)
            yield from self._loop()
            if self.refused:
                raise Refused
            yield from self._flush()
        finally:
            self._stop()
            for fd in files:
                os.close(fd)
            if payloads >= 0:
                os.close(payloads)
            self.idle.close()

    def _flush(self) -> Iterator[tuple[tuple[int, ...], Any]]:
        """Yield every result in, as (key, result); keep the workers fed."""
        arrived = self.arrived
        while arrived and not self.refused:
            number = arrived.popleft()
            result = load_mapped(*self.where.pop(number))
            self._notes(wait=False)
            self._give()
            yield self.key_of.pop(number), result

    def fork(self, files: list[int]) -> None:
        out = os.memfd_create("dedup-results", os.MFD_CLOEXEC)
        files.append(out)
        task_r, task_w = os.pipe()
        note_r, note_w = os.pipe()
        os.set_blocking(task_r, False)  # this process takes tasks back without waiting
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; its outcome is checked
            _serve(task_r, note_w, self.payloads, out, self.work,
                   [task_w, note_r] + [fd for w in self.workers for fd in (w.tasks, w.notes)],
                   self.idle)
        os.close(note_w)
        os.set_blocking(note_r, False)
        self.workers.append(_Worker(pid, task_w, note_r, out))
        self.task_r[task_w] = task_r

    def _give(self, keep: int = 0) -> None:
        # Older tasks go out (the workers'), the newest are run here, depth first; *keep* of
        # them stay for this process (about to take its next task: the rest of a worker's
        # task cut because this process was idle is not all handed back to that worker).
        for worker in self.workers:
            while len(self.ready) > keep and len(worker.held) < AHEAD and worker.pid:
                number = self.ready.popleft()
                data = marshal.dumps(self.task_of[number])
                _append(self.payloads, data)
                _append(worker.tasks, b"".join(x.to_bytes(8, "little", signed=True) for x in (
                    number, self.sent_at, len(data))))
                self.sent_at += len(data)
                worker.held.append(number)

    def _take_back(self) -> int | None:
        for worker in self.workers:
            if len(worker.held) > 1 and worker.pid:
                try:
                    msg = os.read(self.task_r[worker.tasks], _MSG)
                except BlockingIOError:
                    continue
                if len(msg) == _MSG:
                    number = int.from_bytes(msg[:8], "little", signed=True)
                    worker.held.remove(number)
                    return number
        return None

    def _notes(self, wait: bool) -> None:
        live = [w for w in self.workers if w.pid]
        if wait and live:
            select.select([w.notes for w in live], [], [])
        for worker in live:
            try:
                data = os.read(worker.notes, 64 * _NOTE)
            except BlockingIOError:
                continue
            if not data:  # the worker is gone: what it held is run again
                self._lost(worker)
                continue
            data = worker.buffer + data
            end = len(data) - len(data) % _NOTE
            worker.buffer = data[end:]
            for at in range(0, end, _NOTE):
                number, offset, head, body = (
                    int.from_bytes(data[k : k + 8], "little", signed=True)
                    for k in range(at, at + _NOTE, 8))
                worker.held.remove(number)
                info, subtasks = load_mapped(worker.out, offset, head)
                self._finished(number, info, subtasks, (worker.out, offset + head, body))

    def _lost(self, worker: _Worker) -> None:
        os.waitpid(worker.pid, 0)
        worker.pid = 0
        self.ready.extendleft(reversed(worker.held))
        worker.held.clear()

    def _finished(self, number: int, info: Any, subtasks: list, where: tuple[int, int, int]
                  ) -> None:
        del self.task_of[number]
        if self.refused:
            return
        if self.accept is not None and not self.accept(info):
            self.refused = True
            return
        self.where[number] = where
        key = self.key_of[number]
        for k, task in enumerate(subtasks):
            self.key_of[self.new(task)] = key + (k,)
        self.arrived.append(number)

    def _loop(self) -> Iterator[tuple[tuple[int, ...], Any]]:
        while self.task_of:
            self._notes(wait=False)
            if self.refused or not self.task_of:
                return
            self._give(keep=1)
            number = self.ready.pop() if self.ready else self._take_back()
            if number is None:
                if not any(w.pid for w in self.workers) and not self.ready:
                    raise RuntimeError("tasks left and no worker")  # not reached: _lost requeues
                if self.arrived:  # no wait: yield
                    yield from self._flush()
                else:
                    self.idle[0] = 1  # the workers' tasks end at their next look (`_serve`)
                    self._notes(wait=True)
                    self.idle[0] = 0
                continue
            result, info, subtasks = self.work(self.task_of[number], self._stop_here)
            data = marshal.dumps(result)
            _append(self.own, data)
            self._finished(number, info, subtasks, (self.own, self.own_at, len(data)))
            self.own_at += len(data)
            yield from self._flush()

    def _stop_here(self) -> bool:
        """Between steps of a task run here: take the finished tasks' notes in and feed the
        workers; return True when one of them has nothing left and nothing waits to give it
        (the task here should end and hand back what it has not done), or the run is refused."""
        self._notes(wait=False)
        self._give()
        return self.refused or (not self.ready and any(w.pid and not w.held
                                                       for w in self.workers))

    def _stop(self) -> None:
        """End the workers: each reads the end of its pipe and exits (killed if the run is
        being abandoned); they are reaped later (`dedup.processes.reap`): their results are in,
        and this process need not wait for their exits."""
        for worker in self.workers:
            if worker.tasks >= 0:
                os.close(worker.tasks)
                os.close(self.task_r.pop(worker.tasks))
                worker.tasks = -1
            if worker.pid and (self.refused or self.task_of):
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except OSError:
                    pass
            if worker.pid:
                reap_later(worker.pid)
                worker.pid = 0
            if worker.notes >= 0:
                os.close(worker.notes)
                worker.notes = -1


def _serve(tasks: int, notes: int, payloads: int, out: int, work: Work,
           others: list[int], idle: mmap.mmap) -> None:
    """Run tasks in a forked worker until its pipe ends; never return. A task ends early (its
    `stop` says True) while *idle*'s byte is set: the parent waits with nothing to run."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, once
        for fd in others:  # a pipe's end held here would keep it open
            os.close(fd)
        at = 0
        while True:
            try:
                msg = os.read(tasks, _MSG)
            except BlockingIOError:
                select.select([tasks], [], [])
                continue
            if not msg:
                break
            number, offset, length = (int.from_bytes(msg[k : k + 8], "little", signed=True)
                                      for k in (0, 8, 16))
            result, info, subtasks = work(load_mapped(payloads, offset, length),
                                          lambda: idle[0] != 0)
            head = marshal.dumps((info, subtasks))
            body = marshal.dumps(result)
            _append(out, head + body)
            _append(notes, b"".join(x.to_bytes(8, "little", signed=True) for x in (
                number, at, len(head), len(body))))
            at += len(head) + len(body)
        code = 0
    finally:
        # No cleanup of the parent's objects, no buffered output flushed twice, no atexit.
        os._exit(code)
