"""Where a study's jobs run, and how they stop: this process, or a pool of worker processes.

The contract, whatever runs the jobs (this process, :func:`run_here`, with one job at a time;
the process pool below, :func:`run_pool`; a cluster backend later): a job is given a stop request
(anything with ``signum``); once that is set, the job writes its checkpoint at its next safe
point and ends with StudyInterrupted (run_job, fit). The driver, _drive, on a stop request
starts no more jobs, passes the request on to the jobs under way, stores what still
finishes, waits for the others to checkpoint, then raises StudyInterrupted; on a second
signal it abandons the jobs under way at once (their last checkpoints, written atomically,
stay whole). A backend only starts jobs, reports how they ended, passes a stop on, abandons
and closes: the methods of _ProcessPool.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.resource_tracker
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..interrupt import StopRequest, StudyInterrupted, WorkerLost, signals_blocked
from . import jobs

__all__ = ["run_here", "run_pool"]


def _signame(signum: int) -> str:
    return signal.Signals(signum).name


class _RemoteTraceback(Exception):
    """A worker's traceback, as text: the cause of the error that failed its job, raised again in the parent."""

    def __init__(self, text: str) -> None:
        super().__init__(text)

    def __str__(self) -> str:
        return f"\n(in the worker process)\n{self.args[0]}"


def _portable(err: Exception) -> Exception:
    """What crosses to the parent for ``err``: itself, where it pickles (every droplab error does:
    each passes its data, its constructor's arguments, on as its ``args``); a foreign one that does
    not (an exception whose ``__init__`` does not take its ``args`` back) as a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


def _watch_parent() -> None:
    """In a worker: if the parent dies (killed outright), the job under way stops at its next safe point."""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        if jobs._stop is not None and jobs._stop.signum is None:
            jobs._stop.signum = signal.SIGHUP

    if parent is not None:
        threading.Thread(target=watch, name="droplab-parent-watch", daemon=True).start()


def _worker_main(conn, data_dir: str, val_size: int, verify: bool, threads: int) -> None:
    """A worker process: jobs from ``conn``, one at a time, until None, or until the parent is gone."""
    try:
        jobs._init_worker(data_dir, val_size, verify, threads)
        broken = None
    except Exception as err:  # reported as the first job's failure
        broken = err
    _watch_parent()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break  # the parent is gone
        if task is None:
            break
        try:
            if jobs._stop is not None and jobs._stop.signum is not None:  # stopped before this job began: not begun
                raise StudyInterrupted(jobs._stop.signum, "")
            if broken is not None:
                raise broken
            reply = ("done", jobs.run_job(task[0], None, task[1]))
        except StudyInterrupted as err:
            reply = ("stopped", err.signum)
        except Exception as err:
            reply = ("failed", (_portable(err), traceback.format_exc()))
        try:
            conn.send(reply)
        except OSError:
            break
    # Nothing to tear down (every file it wrote is whole and closed); the interpreter's own
    # teardown of torch and numba would take seconds, which the parent would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass(eq=False)
class _Worker:
    proc: Any  # multiprocessing's SpawnProcess
    conn: Any  # this end of its pipe
    task: Any = None  # the job it runs (the driver's tag); None: idle
    halted: bool = False  # it was asked to stop
    gone: bool = False  # it ended, and was reaped


class _ProcessPool:
    """Spawned worker processes, each with a pipe of its own: no lock or queue is shared, so a
    worker that dies loses its own job only, and the pool knows which; a worker whose parent is
    gone ends after its job."""

    def __init__(self, n: int, initargs: tuple) -> None:
        self.n, self.initargs, self.workers = n, initargs, []

    def open(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # numba's and torch's thread pools do not survive fork
        # Started before the block, not by the first worker's start: starting it unblocks SIGINT/SIGTERM.
        multiprocessing.resource_tracker.ensure_running()
        with signals_blocked():  # a worker holds SIGINT/SIGTERM back until it has its StopRequest (_init_worker)
            for _ in range(self.n):
                conn, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child, *self.initargs), name="droplab-worker")
                try:
                    proc.start()
                finally:
                    child.close()
                self.workers.append(_Worker(proc, conn))

    def idle(self) -> list[_Worker]:
        return [w for w in self.workers if w.task is None and not w.gone]

    def busy(self) -> bool:
        return any(w.task is not None for w in self.workers)

    def start(self, worker: _Worker, tag, job: Mapping[str, Any], checkpoint: Path) -> None:
        worker.task = tag
        with contextlib.suppress(OSError):  # it died: poll() reports the job lost
            worker.conn.send((job, checkpoint))

    def _reap(self, w: _Worker) -> None:
        w.proc.join()
        w.gone = True

    def poll(self, timeout: float) -> list[tuple[Any, str, Any]]:
        """How jobs ended meanwhile: (tag, "done", result), (tag, "stopped", signum),
        (tag, "failed", (error, traceback)), (tag, "lost", exit code); tag None: an idle worker died."""
        watch = {}
        for w in self.workers:
            if not w.gone:
                watch[w.conn], watch[w.proc.sentinel] = w, w
        ready = multiprocessing.connection.wait(list(watch), timeout) if watch else []
        events = []
        for w in dict.fromkeys(watch[r] for r in ready):
            reply = None
            if w.conn.poll():
                with contextlib.suppress(EOFError, OSError):  # died, maybe mid-message
                    reply = w.conn.recv()
            elif w.proc.is_alive():
                continue
            tag, w.task, w.halted = w.task, None, False
            if reply is None:
                self._reap(w)
                events.append((tag, "lost", w.proc.exitcode))
            else:
                events.append((tag, *reply))
        return events

    def halt(self) -> None:
        """The jobs under way stop at their next safe point: SIGTERM, which a worker only records."""
        for w in self.workers:
            if w.task is not None and not w.halted and not w.gone:
                w.halted = True
                w.proc.terminate()

    def abandon(self) -> list:
        """Kill every worker now (a second signal); the tags of the jobs they ran."""
        for w in self.workers:
            if not w.gone:
                w.proc.kill()
        tags = []
        for w in self.workers:
            if not w.gone:
                self._reap(w)
            if w.task is not None:
                tags.append(w.task)
                w.task = None
        return tags

    def close(self, stop: StopRequest) -> None:
        """End every worker: a job still under way stops at its next safe point first (what it
        sends then is dropped); a second signal meanwhile kills them."""
        self.halt()
        for w in self.workers:
            if not w.gone:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
        open_conns = {w.conn for w in self.workers if not w.gone}
        while not all(w.gone for w in self.workers):
            if stop.count >= 2:
                self.abandon()
                break
            alive = [w for w in self.workers if not w.gone]
            ready = multiprocessing.connection.wait([w.proc.sentinel for w in alive] + list(open_conns), 0.2)
            for w in alive:
                if w.conn in ready and w.conn in open_conns:
                    try:
                        w.conn.recv()  # a reply nobody waits for: read, so that the worker is not stuck writing it
                    except (EOFError, OSError):
                        open_conns.discard(w.conn)
                if w.proc.sentinel in ready:
                    self._reap(w)
        for w in self.workers:
            w.conn.close()
            w.proc.close()


def _job_name(tag) -> str:
    return f"{tag[0]}, seed {tag[1]}"


def _died(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {_signame(-code)}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    return f"exited unexpectedly (status {code})"


def _drive(pool: _ProcessPool, todo: dict, partial: Path, stop: StopRequest, store_result) -> None:
    """Run ``todo`` on ``pool`` (see above for the contract); store each result as it comes."""
    queue = list(todo.items())
    signum, failure, lost, abandoned, finished = None, None, [], [], 0
    while True:
        if signum is None:
            signum = stop.signum
        ending = signum is not None or failure is not None or bool(lost)
        if ending and stop.count >= 2:
            abandoned = pool.abandon()
            break
        if ending:
            pool.halt()
        else:
            for worker in pool.idle()[: len(queue)]:
                tag, (key, job) = queue.pop(0)
                pool.start(worker, tag, job, partial / f"{key}.pt")
        if not pool.busy() and (ending or not queue):
            break
        for tag, how, what in pool.poll(0.2):
            if how == "done":
                key = todo[tag][0]
                store_result(tag, key, what)
                (partial / f"{key}.pt").unlink(missing_ok=True)
                finished += 1
            elif how == "stopped":  # a signal to this worker alone stops the whole study too
                signum = signum or what
            elif how == "failed":
                failure = failure or what
            else:
                lost.append((tag, what))
    for tag in abandoned + [tag for tag, _ in lost if tag is not None]:  # killed, perhaps mid-write
        for stale in partial.glob(f".{todo[tag][0]}.pt.tmp-*"):
            stale.unlink(missing_ok=True)
    if failure is not None:
        err, remote = failure
        raise err from _RemoteTraceback(remote)
    done = f"{finished} of {len(todo)} runs"
    if lost:
        tag, code = lost[0]
        what = f"with {_job_name(tag)} (it goes on from its last checkpoint)" if tag is not None else "between runs"
        more = f"; {len(lost) - 1} more worker(s) died" if len(lost) > 1 else ""
        raise WorkerLost(-code if code is not None and code < 0 else signal.SIGKILL,
                         f"a worker process {_died(code)} {what}{more}; the study stopped after {done}")  # fmt: skip
    if abandoned:
        names = "; ".join(_job_name(t) for t in abandoned)
        raise StudyInterrupted(signum, f"interrupted by {_signame(signum)} and stopped at once by a second signal "
                                       f"after {done} ({names} go on from their last checkpoints)")  # fmt: skip
    if signum is not None:
        raise StudyInterrupted(signum, f"interrupted by {_signame(signum)} after {done}")


def run_pool(todo, data, val_size, verify, threads, jobs, partial, stop, store_result) -> None:
    """The jobs on a pool of spawned workers, stopped by a signal as _drive says."""
    if stop.signum is not None:
        raise StudyInterrupted(stop.signum, f"interrupted by {_signame(stop.signum)} before any run began")
    pool = _ProcessPool(min(jobs, len(todo)), (data.source, val_size, verify, threads))
    try:
        pool.open()
        _drive(pool, todo, partial, stop, store_result)
    finally:
        pool.close(stop)


def run_here(todo, data, partial: Path, stop: StopRequest, store_result) -> None:
    """The jobs one after another in this process; a stop ends the study once the job under way
    has stopped (checkpointed, StudyInterrupted from the job) or finished."""
    for finished, (tag, (key, job)) in enumerate(todo.items(), 1):
        store_result(tag, key, jobs.run_job(job, data, partial / f"{key}.pt", stop))
        (partial / f"{key}.pt").unlink(missing_ok=True)
        if stop.signum is not None and finished < len(todo):
            why = f"interrupted by {_signame(stop.signum)} after {finished} of {len(todo)} runs"
            raise StudyInterrupted(stop.signum, why)
