"""Handing work over between forked processes (issue 18): results taken in this process as they
come in (`processes.take_in_processes`), and a worker's task cut when this process has nothing to
run (`tasktree.map_tree`)."""

from __future__ import annotations

import os
import time

import pytest

from dedup import processes, tasktree
from tests.dedup.test_processes import _in_tree_order, _pid_task

pytestmark = pytest.mark.skipif(not processes.can_fork(), reason="no fork here (or threads)")


def test_every_result_is_taken_here_once_whatever_process_ran_it():
    taken: dict[int, tuple[int, int]] = {}

    def take(number: int, result: tuple[int, int]) -> None:
        assert number not in taken
        taken[number] = result

    processes.take_in_processes(200, _pid_task, 3, take)
    assert sorted(taken) == list(range(200))
    assert all(taken[n][0] == n * n for n in taken)
    assert len({pid for _, pid in taken.values()}) > 1  # not all run here


def test_taken_tasks_of_a_worker_that_dies_are_run_here():
    parent = os.getpid()
    taken: dict[int, int] = {}

    def dying(number: int) -> int:
        if os.getpid() != parent and number % 3 == 0:
            os._exit(9)  # a crash in the child, mid-run
        return number + 1

    processes.take_in_processes(60, dying, 3, taken.__setitem__)
    assert taken == {n: n + 1 for n in range(60)}


@pytest.mark.parametrize("dies", [False, True])
def test_with_ready_the_other_processes_results_are_taken_after_it(dies, tmp_path):
    # `ready` frees what only the work needed (the small-file stage's table): it runs once,
    # after every task's work, a dead worker's too, and before any other process's result.
    # By construction, not timing: each child marks its first task done (and, with *dies*, dies
    # at its second), and this process's first task waits for a mark, so the children ran some.
    parent = os.getpid()
    events: list = []
    ran: list = []  # in a child: its own copy

    def work(number: int) -> tuple[int, int]:
        if os.getpid() != parent:
            if dies and ran:
                os._exit(9)
            ran.append(number)
            (tmp_path / f"child-{number}").touch()
        elif not events:
            for _ in range(10_000):  # at most 10 s for a child to start and run a task
                if any(tmp_path.iterdir()):
                    break
                time.sleep(0.001)
        events.append(("work", number))  # this process's list only: the children's are theirs
        return number * number, os.getpid()

    def take(number: int, result: tuple[int, int]) -> None:
        events.append(("take", number, result[1] == parent))

    processes.take_in_processes(60, work, 3, take, ready=lambda: events.append(("ready",)))
    at = events.index(("ready",))
    assert events.count(("ready",)) == 1
    assert all(e[0] == "work" or e[2] for e in events[:at])  # before it: work and own results
    assert all(e[0] == "take" and not e[2] for e in events[at + 1 :])
    assert sorted(e[1] for e in events if e[0] == "take") == list(range(60))
    assert any(e[0] == "take" and not e[2] for e in events)  # the children ran some


def test_with_ready_and_one_process_it_runs_after_the_work():
    events: list = []
    processes.take_in_processes(3, _pid_task, 1, lambda n, r: events.append(n),
                                ready=lambda: events.append("ready"))
    assert events == [0, 1, 2, "ready"]


def _stepping(slow_here: bool):
    """A task's work: in this process (*slow_here*) or in the workers, a step at a time until told
    to stop (at most 100,000 steps, 10 s); elsewhere its whole range at once."""
    parent = os.getpid()

    def steps(task, stop):
        name, first, last = task
        end = last
        if (os.getpid() == parent) == slow_here:
            end = first + 1
            while end < last and not stop():
                time.sleep(0.0001)
                end += 1
        rest = [[name, end, last]] if end < last else []
        return [name, first, end, os.getpid()], 0, rest

    return steps


def _two_ranges(slow_here: bool) -> list:
    """Run tasks "a" and "b" (100,000 steps each) on 2 processes; check every step ran once."""
    results = _in_tree_order(tasktree.map_tree([["a", 0, 100_000], ["b", 0, 100_000]],
                                               _stepping(slow_here), 2))
    for name in "ab":  # every step once, in tree order
        spans = [(r[1], r[2]) for r in results if r[0] == name]
        assert [x for span in spans for x in range(*span)] == list(range(100_000))
    return results


def test_task_tree_task_here_hands_back_its_rest_when_a_worker_is_idle():
    # A worker that finished its task leaves this process's task to be cut: its rest comes
    # back as a subtask.
    results = _two_ranges(slow_here=True)
    assert any(r[3] == os.getpid() and r[2] < 100_000 for r in results)  # a task here was cut


def test_task_tree_worker_task_hands_back_its_rest_when_this_process_is_idle():
    # The mirror: "a" goes to the worker (the oldest tasks are the workers'), "b" is run here at
    # once. This process, with nothing left to run, has the worker's task cut, and keeps the
    # newest ready task (the cut task's rest) for itself.
    parent = os.getpid()
    results = _two_ranges(slow_here=False)
    assert any(r[3] != parent and r[2] < 100_000 for r in results)  # a worker's task was cut
    assert any(r[0] == "a" and r[3] == parent for r in results)  # its rest was run here
