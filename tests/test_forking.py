"""Jobs run side by side in forked children (`forking.run_each`): results in order, failures
raised here, no child left behind."""

import os
import time

import pytest

from emocompose.forking import ChildError, can_fork, run_each

pytestmark = pytest.mark.skipif(not can_fork(), reason="forks only on Linux")


def test_results_come_back_in_order_from_the_children():
    here = os.getpid()
    jobs = [lambda k=k: (k, os.getpid() != here) for k in range(5)]
    # jobs 1 and 2 in children; 0, 3 and 4 here
    assert run_each(jobs, 3) == [(0, False), (1, True), (2, True), (3, False), (4, False)]
    assert run_each(jobs, 1) == [(k, False) for k in range(5)]


def test_a_failure_in_a_child_is_raised_here_with_its_traceback():
    def bad():
        raise ValueError("no such bar")

    with pytest.raises(ChildError, match=r"(?s)ValueError: no such bar.*Traceback.*in bad"):
        run_each([lambda: 1, bad], 2)


def test_a_child_that_dies_is_named_as_killed():
    with pytest.raises(ChildError, match="killed by signal 9"):
        run_each([lambda: 1, lambda: os.kill(os.getpid(), 9)], 2)


def children() -> set[int]:
    """This process's child processes, living or not yet reaped."""
    me, out = os.getpid(), set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                    out.add(int(pid))
        except OSError:  # ended while we looked
            pass
    return out


def test_a_failure_here_ends_the_children_at_once():
    def here():
        time.sleep(0.5)  # the child is asleep by now
        raise KeyboardInterrupt

    before, t0 = children(), time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_each([here, lambda: time.sleep(60)], 2)
    assert time.perf_counter() - t0 < 10
    assert children() <= before  # killed and reaped: none sleeps on


def test_without_more_processes_the_jobs_run_here(monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert run_each([lambda k=k: (k, os.getpid()) for k in range(3)], 3) == [(k, os.getpid()) for k in range(3)]
