"""Independent pieces of work run side by side in forked child processes, for a batch's
decoding (`sampling.decode_bars`). Processes rather than threads: the host side of decoding is
Python (the GIL let two threads run no faster than one), and torch's threads share each small
operation of a token, waiting on one another at every step, so that two such processes on two
cores fought for them (README, "Threads and parallel jobs").

A child is a fork of this process (no re-import, no copy of the model: its memory is shared
until written), so this works only where fork is safe: on Linux.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import traceback
from typing import Callable, TypeVar

T = TypeVar("T")


def can_fork() -> bool:
    """Whether `run_each` can fork here: on Linux (on macOS a forked child of a process that has
    used system frameworks may crash, and Windows has no fork)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class ChildError(RuntimeError):
    """A job failed in a child process; the message carries its exception and traceback."""


def run_each(jobs: list[Callable[[], T]], processes: int) -> list[T]:
    """The results of `jobs`, in order. jobs[1:processes] run in forked children while this
    process runs the others (all of them where it cannot fork, or where the system gives it no
    more processes); so a job must not depend on another's side effects, and its result must
    pickle. A child ignores Ctrl-C (this process is interrupted and ends it), dies with this
    process, and leaves without running this process's exit handlers."""
    results: list = [None] * len(jobs)
    forked: dict[int, tuple[int, int]] = {}  # job -> (child, the pipe its result comes through)
    try:
        if can_fork():
            gc.freeze()  # else the collector writes into every old object's page in a child (copies)
            try:
                for i in range(1, min(processes, len(jobs))):
                    forked[i] = _fork(jobs[i])
            except OSError:  # no more processes to be had: the rest run here
                pass
            finally:
                gc.unfreeze()
        for i, job in enumerate(jobs):
            if i not in forked:
                results[i] = job()
        for i in list(forked):
            results[i] = _result(*forked.pop(i))
    finally:
        for pid, fd in forked.values():  # what failed here (or Ctrl-C) ends the children too
            _end(pid, fd)
    return results


def _fork(job: Callable[[], T]) -> tuple[int, int]:
    read, write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    try:  # the child: never returns into the caller's code
        os.close(read)
        _die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            outcome = ("ok", job())
        except BaseException as exc:  # noqa: BLE001  (sent to the parent, which raises it)
            outcome = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        with os.fdopen(write, "wb") as f:
            pickle.dump(outcome, f, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        os._exit(0)


def _die_with_parent(parent: int) -> None:
    """Be killed when the parent ends, even by SIGKILL (which leaves it no time to end us)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it ended before we asked
        os._exit(1)


def _result(pid: int, fd: int):
    with os.fdopen(fd, "rb") as f:
        try:
            kind, value = pickle.load(f)
        except Exception:  # noqa: BLE001  (killed before it wrote all of it: said below)
            kind, value = "error", None
    _, status = os.waitpid(pid, 0)
    if kind == "ok":
        return value
    raise ChildError(value or f"a child process ended without its result ({_how(status)})")


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _end(pid: int, fd: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.close(fd)
    os.waitpid(pid, 0)
